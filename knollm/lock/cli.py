"""``knollm lock …``, ``knollm roles …`` and ``knollm local …`` commands."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from knollm.cli.filters import CountType, PriceType, SecondsType, dumps_option
from knollm.cli.output import emit, emit_json, output_options
from knollm.fmt import fmt_int, fmt_price

__all__ = ["lock_group", "roles_group", "local_group"]


def lock_options(f: Callable) -> Callable:
    """``--lock FILE`` (env KNOLLM_LOCK, default ./knollm.lock) and ``--profile`` (env KNOLLM_PROFILE)."""

    @click.option("--lock", "lock_path", type=click.Path(dir_okay=False), default=None,
                  help="Lockfile (default $KNOLLM_LOCK, then ./knollm.lock).")
    @click.option("--profile", "-p", default=None, help="Profile (default $KNOLLM_PROFILE, then default_profile).")
    @functools.wraps(f)
    def wrapper(*a: Any, **kw: Any) -> Any:
        return f(*a, **kw)

    return wrapper


def _path(lock_path: str | None, must_exist: bool = True) -> Path:
    from knollm.lock.lockfile import LOCK_NAME, find_lock

    p = find_lock(lock_path)
    if p is None:
        if must_exist:
            raise click.UsageError(f"no lockfile: pass --lock FILE, set KNOLLM_LOCK or create ./{LOCK_NAME} "
                                   "with `knollm lock init`")
        p = Path(LOCK_NAME)
    return p


def _load(lock_path: str | None, profile: str | None):
    from knollm.lock.lockfile import active_profile, load_lock, user_config

    cfg = user_config()
    lf = load_lock(_path(lock_path))
    return lf, active_profile(lf, profile, cfg), cfg


def _chooser(dumps: str, cfg: Any = None, *, from_keys: bool = False, budget: float | None = None):
    from knollm.cli.filters import load_cached_catalog
    from knollm.lock.local import join, load_scan, machine_memory
    from knollm.lock.lockfile import user_config
    from knollm.lock.ops import make_chooser

    cfg = cfg if cfg is not None else user_config()
    local = [m for m in load_scan().get("models") or [] if isinstance(m, dict) and m.get("key")]
    mem = machine_memory()
    cat = join(load_cached_catalog(dumps), local)
    memory = max(v for v in (mem["ram"], mem["vram"], 0) if v is not None) or None
    return make_chooser(cat, cfg, from_keys=from_keys, budget=budget, local=local, memory=memory)


def _volume(values: tuple[str, ...]) -> tuple[dict[str, tuple[int, int]], tuple[int, int] | None]:
    """``IN:OUT`` (every alias) or ``ALIAS=IN:OUT``, monthly tokens."""
    from knollm.query.cost import parse_count

    per: dict[str, tuple[int, int]] = {}
    default = None
    for v in values:
        alias, _, spec = v.rpartition("=")
        try:
            i, o = spec.split(":")
            pair = (parse_count(i), parse_count(o))
        except ValueError:
            raise click.BadParameter(f"{v!r}: use IN:OUT or ALIAS=IN:OUT, e.g. 10M:2M", param_hint="--volume")
        if alias:
            per[alias] = pair
        else:
            default = pair
    return per, default


def _money(v: float | None) -> str:
    return "?" if v is None else f"${v:,.2f}"


# ============================================================================ knollm lock
@click.group("lock")
def lock_group() -> None:
    """Semantic aliases bound to models in knollm.lock: init, inspect, validate, optimize.

    \b
    Lockfile: --lock FILE > $KNOLLM_LOCK > ./knollm.lock. Profile: --profile >
    $KNOLLM_PROFILE > default_profile. User preferences (providers, privacy, budget):
    ~/.config/knollm/config.toml or $KNOLLM_CONFIG; precedence user < lock < env < flags.
    """


@lock_group.command("init")
@lock_options
@click.option("--local", "include_local", is_flag=True, help="Scan local servers now and add the `local` alias.")
@click.option("--from-keys", is_flag=True, help="Only providers whose API key variable is set.")
@click.option("--use-case", "use_cases", multiple=True, help="Also bind an alias per recommend use case.")
@click.option("--budget", type=PriceType(), default=None, help="Max output price (USD / 1M tokens) for every alias.")
@click.option("--interactive", is_flag=True, help="Ask: the advisor proposes aliases with costs and reasons "
              "(same as `knollm advisor`).")
@click.option("--answers", type=click.Path(dir_okay=False), default=None,
              help="With --interactive: read the answers from this JSON/TOML file (no terminal).")
@dumps_option
@output_options
def init_cmd(lock_path, profile, include_local, from_keys, use_cases, budget, interactive, answers, dumps,
             output) -> int:
    """Choose models for the standard aliases from the catalog and write them (with pins).

    Aliases: fast, balanced, deep, vision, long_context, cheap (+ local when local models are
    found), each a chain of 3 models on different providers. An existing file keeps its other
    profiles, comments and formatting. --interactive runs the advisor instead.
    """
    if interactive or answers:
        from knollm.mcp.advisor import interactive_init

        return interactive_init(lock_path, profile, dumps, answers)
    from knollm.lock.lockfile import user_config
    from knollm.query.recommend import USE_CASES

    for u in use_cases:
        if u not in USE_CASES:
            raise click.BadParameter(f"{u!r} is not one of {', '.join(USE_CASES)}", param_hint="--use-case")
    if include_local:
        from knollm.lock.local import save_scan, scan

        save_scan(scan())
    cfg = user_config()
    ch = _chooser(dumps, cfg, from_keys=from_keys, budget=budget)
    from knollm.lock.ops import init_lock

    res = init_lock(ch, _path(lock_path, must_exist=False), profile=profile or "default",
                    use_cases=list(use_cases), include_local=include_local)
    rows = [{"alias": r["alias"], "models": " > ".join(r["models"]) or "-", "candidates": r["candidates"],
             "note": r.get("note", "")} for r in res["aliases"]]
    emit(rows, ["alias", "models", "candidates", "note"], output, json_obj=res)
    if output["format"] == "table":
        click.echo(f"wrote {res['path']} (profile {res['profile']})", err=True)
    return 0 if any(r["models"] for r in res["aliases"]) else 1


@lock_group.command("show")
@lock_options
@output_options
def show_cmd(lock_path, profile, output) -> int:
    """The active profile's bindings (extends applied) and where they come from."""
    lf, prof, _ = _load(lock_path, profile)
    bs = lf.bindings(prof)
    rows = [{"alias": b.alias, "models": " > ".join(b.models),
             "requires": ",".join(f"{k}={v}" for k, v in b.requires.items()), "prefer": b.prefer,
             "strategy": b.strategy} for b in bs.values()]
    obj = {"path": str(lf.path), "profile": prof, "profiles": lf.profile_names(),
           "bindings": [b.as_dict() for b in bs.values()], "pins": lf.pins, "meta": lf.meta}
    if output["format"] == "table":
        click.echo(f"{lf.path} · profile {prof} (profiles: {', '.join(lf.profile_names())})")
    emit(rows, ["alias", "models", "requires", "prefer", "strategy"], output, json_obj=obj)
    return 0


@lock_group.command("aliases")
@lock_options
@output_options
def aliases_cmd(lock_path, profile, output) -> int:
    """Alias -> primary model, one per line."""
    lf, prof, _ = _load(lock_path, profile)
    rows = [{"alias": b.alias, "primary": b.models[0], "fallbacks": len(b.models) - 1}
            for b in lf.bindings(prof).values()]
    emit(rows, ["alias", "primary", "fallbacks"], output)
    return 0


@lock_group.command("bind")
@lock_options
@click.argument("alias")
@click.argument("models", nargs=-1, required=True)
@click.option("--prefer", type=click.Choice(["cheapest", "fastest", "newest", "local"]), default=None)
@click.option("--strategy", default=None, help="Client strategy name (e.g. fallback).")
@dumps_option
def bind_cmd(lock_path, profile, alias, models, prefer, strategy, dumps) -> int:
    """Bind ALIAS to MODEL… (provider/model keys; first = primary) and pin them."""
    from knollm.lock.edit import LockDoc
    from knollm.lock.lockfile import Binding, active_profile, existing_binding
    from knollm.lock.ops import _pin_all

    path = _path(lock_path, must_exist=False)
    for m in models:
        if "/" not in m:
            raise click.BadParameter(f"{m!r}: use provider/model", param_hint="MODELS")
    ch = _chooser(dumps)
    from knollm.errors import NotFoundError

    keys = []
    for m in models:
        try:
            keys.append(ch.model(m)["key"])
        except NotFoundError as e:
            if m.split("/", 1)[0] in ("ollama", "local"):
                keys.append(m)
                click.echo(f"warning: {m} is not in the local scan", err=True)
            else:
                raise e
    # read, edit and write under the edit lock: parallel binds each keep their alias
    with LockDoc.locked(path) as doc:
        lf = doc.lockfile()
        prof = profile or (active_profile(lf, None) if lf is not None else "default")
        existing = existing_binding(lf, alias, prof)
        b = Binding(alias, keys, strategy or (existing.strategy if existing else None),
                    dict(existing.requires) if existing else {}, prefer or (existing.prefer if existing else None),
                    existing.cloud_fallback if existing else False, prof,
                    existing.cache if existing else None, existing.note if existing else None)
        doc.set_binding(b, prof)
        _pin_all(doc, ch, keys)
        doc.prune_pins()
        diff = doc.save()
    click.echo(diff or "no change", nl=False)
    return 0


@lock_group.command("unbind")
@lock_options
@click.argument("alias")
def unbind_cmd(lock_path, profile, alias) -> int:
    """Remove ALIAS from the profile (its unused pins too)."""
    from knollm.lock.edit import LockDoc
    from knollm.lock.lockfile import active_profile, load_lock

    path = _path(lock_path)
    if not path.is_file():
        load_lock(path)  # the error naming the missing file
    with LockDoc.locked(path) as doc:
        prof = profile or active_profile(doc.lockfile(), None)
        if not doc.remove_binding(alias, prof):
            click.echo(f"alias {alias!r} is not bound in profile {prof!r}", err=True)
            return 1
        doc.prune_pins()
        diff = doc.save()
    click.echo(diff, nl=False)
    return 0


def _volume_options(f: Callable) -> Callable:
    f = click.option("--usage", type=click.Path(dir_okay=False, exists=True), default=None,
                     help="Usage ledger (JSON lines with alias, input_tokens, output_tokens) for the volumes.")(f)
    return click.option("--volume", multiple=True, metavar="[ALIAS=]IN:OUT",
                        help="Monthly tokens, e.g. 10M:2M or deep=1M:500k (default 10M:2M per alias).")(f)


def _volumes(volume, usage):
    from knollm.lock.ops import DEFAULT_VOLUME, read_usage

    per, default = _volume(volume)
    if usage:
        per = {**read_usage(usage), **per}
    return per, default or DEFAULT_VOLUME


@lock_group.command("analyze")
@lock_options
@_volume_options
@dumps_option
@output_options
def analyze_cmd(lock_path, profile, volume, usage, dumps, output) -> int:
    """Monthly cost per alias and per pool member (with price sources), and the total."""
    from knollm.lock.ops import analyze

    lf, prof, cfg = _load(lock_path, profile)
    per, default = _volumes(volume, usage)
    res = analyze(lf, _chooser(dumps, cfg), prof, per, default)
    rows = [{"alias": a["alias"], "model": m["model"], "role": m["role"],
             "volume": f"{fmt_int(a['input_tokens'])}:{fmt_int(a['output_tokens'])}",
             "in $/M": fmt_price(m.get("input_price")), "out $/M": fmt_price(m.get("output_price")),
             "monthly": _money(m["monthly_usd"]), "source": m.get("source") or m.get("note") or "?"}
            for a in res["aliases"] for m in a["members"]]
    emit(rows, ["alias", "model", "role", "volume", "in $/M", "out $/M", "monthly", "source"], output, json_obj=res)
    if output["format"] == "table":
        click.echo(f"\ntotal (primaries): {_money(res['total_monthly_usd'])} / month"
                   + (f"; unknown for {', '.join(res['unknown'])}" if res["unknown"] else ""))
        if res.get("note"):
            click.echo(f"note: {res['note']}")
    return 0


@lock_group.command("optimize")
@lock_options
@click.option("--apply", "do_apply", is_flag=True, help="Write the proposals and show the diff.")
@click.option("--from-keys", is_flag=True, help="Only providers whose API key variable is set.")
@_volume_options
@dumps_option
@output_options
def optimize_cmd(lock_path, profile, do_apply, from_keys, volume, usage, dumps, output) -> int:
    """For each alias: cheaper or newer models meeting the same requirements, with the saving."""
    from knollm.lock.ops import apply_optimize, optimize

    lf, prof, cfg = _load(lock_path, profile)
    per, default = _volumes(volume, usage)
    ch = _chooser(dumps, cfg, from_keys=from_keys)
    rows = optimize(lf, ch, prof, per, default)
    cells = []
    for r in rows:
        cells.append({"alias": r["alias"], "option": r.get("change") or "keep", "model": " > ".join(r["proposed"]),
                      "monthly": _money(r.get("monthly_new", r["monthly_now"])),
                      "saving/mo": _money(r.get("saving")) if r.get("change") else "",
                      "what changes": "; ".join(r.get("changes") or [])})
        for kind in ("cheaper", "newer"):
            for a in r[kind]:
                cells.append({"alias": "", "option": kind, "model": a["model"], "monthly": _money(a["monthly"]),
                              "saving/mo": _money(a["saving"]), "what changes": "; ".join(a["changes"])})
    obj: dict[str, Any] = {"profile": prof, "aliases": rows}
    if do_apply:
        obj["diff"] = apply_optimize(lf, ch, prof, rows)
    emit(cells, ["alias", "option", "model", "monthly", "saving/mo", "what changes"], output, json_obj=obj)
    if do_apply and output["format"] == "table":
        click.echo(obj["diff"] or "nothing to apply")
    return 0


@lock_group.command("validate")
@lock_options
@click.option("--strict", is_flag=True, help="Warnings count as errors (exit 2).")
@dumps_option
@output_options
def validate_cmd(lock_path, profile, strict, dumps, output) -> int:
    """Missing / deprecated models, requirements not met, drift since pinned, missing keys.

    Exit 0 ok, 1 warnings, 2 errors (--strict: warnings too).
    """
    from knollm.lock.ops import exit_code, validate

    lf, _, cfg = _load(lock_path, profile)
    issues = validate(lf, _chooser(dumps, cfg))
    code = exit_code(issues, strict)
    rows = [{k: i.get(k) for k in ("level", "profile", "alias", "model", "code", "message")} for i in issues]
    emit(rows, ["level", "profile", "alias", "code", "message"], output,
         json_obj={"path": str(lf.path), "exit_code": code, "issues": issues})
    if output["format"] == "table":
        n_err = sum(i["level"] == "error" for i in issues)
        click.echo(f"\n{lf.path}: {n_err} error(s), {len(issues) - n_err} warning(s)", err=True)
    return code


@lock_group.command("diff")
@click.argument("old", type=click.Path(dir_okay=False, exists=True))
@click.argument("new", type=click.Path(dir_okay=False, exists=True))
@output_options
def diff_cmd(old, new, output) -> int:
    """What changed between two lockfiles (aliases, chains, requirements, pins). Exit 1 if any."""
    from knollm.lock.lockfile import load_lock
    from knollm.lock.ops import diff_locks

    rows = diff_locks(load_lock(old), load_lock(new))
    cells = [{**r, "old": _fmt(r["old"]), "new": _fmt(r["new"])} for r in rows]
    emit(cells, ["profile", "alias", "change", "old", "new"], output, json_obj=rows)
    return 1 if rows else 0


def _fmt(v: Any) -> str:
    if isinstance(v, list):
        return " > ".join(map(str, v))
    if isinstance(v, dict):
        return ",".join(f"{k}={_fmt(x)}" for k, x in v.items())
    return "-" if v is None else str(v)


@lock_group.command("import")
@click.argument("source", type=click.Path(dir_okay=False, exists=True))
@click.option("--lock", "lock_path", type=click.Path(dir_okay=False), default=None, help="Lockfile to write.")
@dumps_option
@output_options
def import_cmd(source, lock_path, dumps, output) -> int:
    """Import an llmring.lock (profiles, aliases, provider:model chains); lists what did not map."""
    from knollm.lock.ops import import_llmring

    res = import_llmring(source, _path(lock_path, must_exist=False), _chooser(dumps))
    rows = [{"profile": u["profile"], "alias": u["alias"], "ref": u["ref"], "reason": u["reason"]}
            for u in res["unmapped"]]
    if output["format"] == "table":
        for b in res["bindings"]:
            click.echo(f"{b['profile']}.{b['alias']}: {' > '.join(b['models'])}")
        if res["ignored"]:
            click.echo(f"ignored top-level keys: {', '.join(res['ignored'])}")
        if rows:
            click.echo("\ncould not map:")
    emit(rows, ["profile", "alias", "ref", "reason"], output, json_obj=res)
    return 1 if not res["bindings"] else 0


# ============================================================================ knollm roles
@click.group("roles")
def roles_group() -> None:
    """The built-in aliases (roles) and how a binding resolves now."""


@roles_group.command("list")
@output_options
def roles_list(output) -> int:
    """Built-in aliases: requirements, token mix, ranking weights."""
    from knollm.lock.roles import ALIASES

    rows = [a.as_dict() for a in ALIASES.values()]
    cells = [{"alias": r["name"], "requires": _fmt(r["requires"]), "weights": _fmt(r["weights"]),
              "description": r["description"]} for r in rows]
    emit(cells, ["alias", "requires", "weights", "description"], output, json_obj=rows)
    return 0


@roles_group.command("explain")
@lock_options
@click.argument("alias")
@dumps_option
@output_options
def roles_explain(lock_path, profile, alias, dumps, output) -> int:
    """How ALIAS resolves now: each model in order, taken or skipped, and why. Exit 1 if none usable."""
    from knollm.lock.ops import explain

    lf, prof, cfg = _load(lock_path, profile)
    res = explain(lf, _chooser(dumps, cfg), alias, prof)
    if output["format"] == "json":
        emit_json(res)
    else:
        b = res["binding"]
        click.echo(f"{alias} (profile {prof}, {lf.path}): {' > '.join(b['models'])}")
        if b["requires"]:
            click.echo(f"  requires {_fmt(b['requires'])}" + (f"; prefer {b['prefer']}" if b["prefer"] else "")
                       + ("; cloud_fallback" if b["cloud_fallback"] else ""))
        for a, nb in (res.get("nested") or {}).items():
            click.echo(f"  nested alias {a}: {' > '.join(nb['models'])}"
                       + (f"; requires {_fmt(nb['requires'])}" if nb["requires"] else "")
                       + (f"; prefer {nb['prefer']}" if nb["prefer"] else "")
                       + ("; cloud_fallback" if nb["cloud_fallback"] else ""))
        for s in res["steps"]:
            checks = f" [{'; '.join(s['checks'])}]" if s["checks"] else ""
            via = f" (via {' < '.join(s['via'])})" if s.get("via") else ""
            click.echo(f"  {s['step']}. {s['model']}{via}: {s['status']} - {s['reason']}{checks}")
        click.echo(f"=> {res['resolves_to'] or 'no usable model now (see `knollm lock optimize`)'}")
    return 0 if res["resolves_to"] else 1


# ============================================================================ knollm local
@click.group("local")
def local_group() -> None:
    """Models served on this machine (Ollama, LM Studio, llama.cpp, vLLM)."""


@local_group.command("scan")
@click.option("--host", "hosts", multiple=True, metavar="URL",
              help="Server to scan (repeatable); default the usual local ports.")
@click.option("--timeout", type=SecondsType(), default=3.0, show_default=True)
@click.option("--no-save", is_flag=True, help="Do not store the result.")
@output_options
def local_scan(hosts, timeout, no_save, output) -> int:
    """Discover local models; stored for `lock init`/`roles explain` (under $KNOLLM_HOME)."""
    from knollm.lock.local import save_scan, scan

    res = scan(list(hosts) or None, timeout=timeout)
    if not no_save:
        res["stored"] = str(save_scan(res))
    ram = res["memory"]["ram"]
    rows = [{"model": m["key"], "params": m.get("parameter_size") or (f"{m['parameters'] / 1e9:.1f}B"
                                                                      if m.get("parameters") else None),
             "quant": m.get("quantization"), "context": fmt_int(m.get("context_window")),
             "native": fmt_int(m.get("native_context")),
             "caps": ",".join(k for k, v in m["capabilities"].items() if v) or "?",
             "mem GiB": f"{m['memory_estimate'] / 2**30:.1f}" if m.get("memory_estimate") else "?",
             "fits": None if not (ram and m.get("memory_estimate")) else m["memory_estimate"] <= ram,
             "host": m["host"] if m.get("local", True) is not False
             else f"{m['host']} -> {m.get('remote_host') or 'cloud'} (not local)"} for m in res["models"]]
    emit(rows, ["model", "params", "quant", "context", "native", "caps", "mem GiB", "fits", "host"], output,
         json_obj=res)
    if output["format"] == "table":
        for h in res["hosts"]:
            click.echo(f"{h['host']}: " + (f"{h['models']} model(s) ({h['kind']})" if not h["error"]
                                          else f"unreachable ({h['error'][:120]})"), err=True)
    return 0 if res["models"] else 1
