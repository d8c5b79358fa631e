"""Search spaces. One module per space; :func:`get_space` resolves a space name."""

from nasi_jax.spaces import darts, nb201

SPACES = {"nb201": nb201, "darts": darts}


def get_space(name: str):
    """Return the module of a search space by name (e.g. ``"nb201"``)."""
    try:
        return SPACES[name]
    except KeyError:
        raise ValueError(f"unknown search space {name!r}; available: {sorted(SPACES)}") from None
