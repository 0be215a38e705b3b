"""``knollm browse``: the terminal explorer (Textual, optional extra ``browse``).

:mod:`knollm.browse.state` (stdlib) holds the state and turns it into ``knollm`` commands
and the site explorer's URL; :mod:`knollm.browse.app` is the Textual app;
:mod:`knollm.browse.cli` the command.
"""

__all__: list[str] = []
