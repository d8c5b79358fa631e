"""NB201 written stage by stage (:mod:`nasi_jax.spaces.nb201.stages`): the staged step equals the
one-program step (float64), and through the runner selects the same cells. A module of its own
so that the two-worker suite (``--dist loadfile``) runs it beside tests/test_staged.py."""

import jax
import jax.numpy as jnp
import numpy as np

from nasi_jax import search, staged
from test_staged import _staged_equals_one_program


def test_nb201_staged_step_equals_the_one_program_step(x64):
    """NB201 written cell by cell (:mod:`nasi_jax.spaces.nb201.stages`): the stages compose to
    the supernet's loss, own every parameter once, share one set of programs per cell width,
    and give the one-program step's (s, ds/dA) to float64 rounding."""
    from nasi_jax.spaces.nb201.networks import NB201Network
    from nasi_jax.spaces.nb201.stages import stages as nb201_stages
    # one cell per stage keeps the one-program compile short; N cells of a width share programs
    assert len({st.apply for st in nb201_stages(NB201Network(channels=2, cells_per_stage=3))
                if st.name.startswith("cell_")}) == 3
    net = NB201Network(channels=2, cells_per_stage=1, dtype=jnp.float64)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 3), jnp.float64)
    y = jnp.array([0, 3])
    A = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(2), (6, 5), jnp.float64), -1)
    variables = net.init(jax.random.PRNGKey(0), x, A, train=False)
    sts = staged.stages(net, "nb201")
    assert [st.name for st in sts] == ["stem", "cell_0_0", "reduce_1", "cell_1_0", "reduce_2", "cell_2_0", "head"]
    assert nb201_stages(NB201Network(channels=2, cells_per_stage=1, dtype=jnp.float64)) is sts
    owned = sorted([k for st in sts if st.path is None for k in st.keys] + [st.path[0] for st in sts if st.path])
    assert owned == sorted(variables["params"])
    g = _staged_equals_one_program(net, variables, sts, x, y, A, "nb201")
    assert not np.asarray(g[:, 0]).any() and np.abs(np.asarray(g[:, 1:])).min() > 0  # `none` is skipped


def test_nb201_staged_search_selects_the_one_program_cells():
    """Through the runner: ``Execution(step_impl='staged')`` on NB201 selects the same cells as the
    one-program step (float32, a tiny supernet), with s within float32 rounding."""
    cfg = search.SearchConfig(steps=3, batch_size=4, channels=2, cells_per_stage=1, image_size=8)
    one = search.run_search(cfg, [0, 1], execution=search.Execution(step_impl="one-program"))
    st = search.run_search(cfg, [0, 1], execution=search.Execution(step_impl="staged"))
    assert st.execution.step_impl == "staged" and one.execution.step_impl == "one-program"
    assert st.arch_strs == one.arch_strs
    np.testing.assert_allclose(st.history["s"], one.history["s"], rtol=1e-5)
    np.testing.assert_allclose(st.alpha_star, one.alpha_star, rtol=1e-4, atol=1e-6)
