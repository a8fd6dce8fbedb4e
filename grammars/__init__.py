"""``gptir.grammars``: package data, the IR grammar ``gptir.lark`` (pyproject maps this folder into the
gptir package, so every install reads it with ``importlib.resources``; ``gptir.text`` builds the parser)."""
