"""``nasi info``: the parameter count and FLOPs of one architecture (and its benchmark entry)."""

from __future__ import annotations

from nasi_jax.cli._common import DefaultsFormatter, positive_int

__all__ = ["add_parser", "run"]


def add_parser(sub):
    i = sub.add_parser("info", help="parameter count and FLOPs (darts: --flops) of one architecture",
                       formatter_class=DefaultsFormatter)
    i.add_argument("--space", default="nb201", help="nb201 (needs --arch) or darts (needs --genotype)")
    i.add_argument("--arch", help="NB201 architecture string")
    i.add_argument("--genotype", help="DARTS genotype: the text Genotype(normal=[...], normal_concat=[...], "
                   "reduce=[...], reduce_concat=[...]), a published name (DARTS_V1, DARTS_V2), a file "
                   "holding the text, or a `nasi search --space darts` result (FILE.json or FILE.json#SEED)")
    i.add_argument("--channels", type=positive_int("--channels"), default=None,
                   help="initial channels C (default: 16 for nb201, 36 for darts)")
    i.add_argument("--cells", type=positive_int("--cells"), default=None,
                   help="nb201: cells per stage N (default 5); darts takes --layers instead")
    i.add_argument("--layers", type=positive_int("--layers"), default=20,
                   help="darts: cells of the evaluation network")
    i.add_argument("--num-classes", type=positive_int("--num-classes"), default=10)
    i.add_argument("--benchmark", help="NB201 accuracy table: also print the cell's accuracies")
    i.add_argument("--flops", action="store_true",
                   help="darts: also print the forward pass's FLOPs per image from XLA's cost analysis "
                   "(compiles the network: seconds to a minute)")
    return i


def _info_darts(args) -> int:
    from nasi_jax.spaces import darts
    if args.genotype is None:
        raise ValueError("--space darts needs --genotype \"Genotype(normal=[...], normal_concat=[2, 3, 4, 5], "
                         "reduce=[...], reduce_concat=[2, 3, 4, 5])\" or a published name (DARTS_V2)")
    if args.arch is not None or args.benchmark is not None:
        raise ValueError("--arch and --benchmark are for --space nb201; use --genotype with --space darts")
    if args.cells is not None:
        raise ValueError("--cells is for --space nb201; the DARTS network's size is --layers (cells in "
                         "all, default 20) and --channels (default 36)")
    from nasi_jax import train  # the genotype sources of `nasi train`: text, name, file, search result
    g = train.parse_architecture(genotype=args.genotype).spec
    C = 36 if args.channels is None else args.channels
    kw = dict(channels=C, layers=args.layers, num_classes=args.num_classes)
    params = darts.count_params(g, **kw)
    with_aux = darts.count_params(g, auxiliary=True, **kw)
    print(f"genotype    {darts.genotype_to_str(g)}")
    print(f"params      {params} ({params / 1e6:.6f} M)  [NetworkCIFAR C={C}, {args.layers} cells, "
          f"{args.num_classes} classes; without the auxiliary head, as the literature reports]")
    print(f"with aux    {with_aux} ({with_aux / 1e6:.6f} M)  [auxiliary head included]")
    if args.flops:
        flops = darts.count_flops(g, **kw)
        print(f"FLOPs       {flops / 1e6:.1f} M per 32x32 image, forward, without the auxiliary head "
              f"[XLA cost analysis: a multiply-add counts 2; BN, ReLU and pooling included]")
    return 0


def _info_nb201(args) -> int:
    from nasi_jax import nb201_table
    from nasi_jax.spaces import nb201
    if args.arch is None:
        raise ValueError(f"--space nb201 needs --arch (e.g. --arch \"{nb201.SPACE.example}\")")
    if args.genotype is not None:
        raise ValueError("--genotype is for --space darts; use --arch with --space nb201")
    if args.flops:
        raise ValueError("--flops is for --space darts; nb201's FLOPs are always printed")
    channels = 16 if args.channels is None else args.channels
    cells = 5 if args.cells is None else args.cells
    ops = nb201.parse_arch(args.arch)
    table = nb201_table.load_nb201_table(args.benchmark) if args.benchmark else None
    kw = dict(channels=channels, cells_per_stage=cells, num_classes=args.num_classes)
    params = nb201.count_params(ops, **kw)
    macs = nb201.count_flops(ops, **kw)
    print(f"arch        {nb201.arch_to_str(ops)}")
    print(f"op indices  {list(ops)}")
    print(f"params      {params} ({params / 1e6:.6f} M)  [C={channels}, N={cells}, "
          f"{args.num_classes} classes]")
    print(f"FLOPs       {macs / 1e6:.3f} M multiply-adds per 32x32 image (convolutions + classifier; "
          f"the NB201 API also counts BN/ReLU/pooling)")
    print(f"degenerate  {nb201.is_degenerate(ops)}")
    if table is not None:
        r = table.lookup(nb201.arch_to_str(ops))
        print(f"benchmark   index {r['index']}: " + ", ".join(
            f"{k} {r[k]:.2f}" for k in nb201_table.METRICS))
    return 0


_BY_SPACE = {"nb201": _info_nb201, "darts": _info_darts}


def run(args, argv) -> int:
    from nasi_jax.spaces import get_space, names
    get_space(args.space)  # an unknown space is named as such
    if args.space not in _BY_SPACE:
        raise ValueError(f"nasi info knows the spaces {sorted(_BY_SPACE)}; {args.space!r} "
                         f"(available spaces: {list(names())}) has no info page")
    return _BY_SPACE[args.space](args)
