"""YAML read safely, with a cap on how far it expands: one loader for ``--config``, ``--rubric`` and ``--prompt-file``.

Its own module so that ``config`` and ``prompt_file`` (which ``config`` reads prompt files through) both import it
without importing each other.
"""

from __future__ import annotations

from typing import Any

#: The most YAML nodes a settings file may expand to (aliases counted each time they are used): an alias
#: bomb ("billion laughs") is refused here instead of expanding while it is validated.
MAX_YAML_NODES = 100_000


def load_yaml(text: str) -> Any:
    """``text`` parsed as YAML safely (no Python objects), refused if it expands past :data:`MAX_YAML_NODES`.

    Raises:
        ValueError: it expands to more nodes than that (an alias bomb); yaml.YAMLError: it is not valid YAML.
    """
    import yaml  # PyYAML comes with transformers

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        sizes: dict[int, int] = {}

        def size(n: Any) -> int:
            # Memoized per node, so an alias used a million times is counted a million times in linear time.
            if id(n) not in sizes:
                sizes[id(n)] = 0  # a recursive alias counts once on its way round
                children = n.value if isinstance(n.value, list) else []
                parts = [c for pair in children for c in pair] if isinstance(n, yaml.MappingNode) else children
                sizes[id(n)] = min(1 + sum(size(c) for c in parts), MAX_YAML_NODES + 1)
            return sizes[id(n)]

        if size(node) > MAX_YAML_NODES:
            raise ValueError(f"the YAML expands to more than {MAX_YAML_NODES} values (aliases repeated); "
                             "write the values out")
        return loader.construct_document(node)
    finally:
        loader.dispose()
