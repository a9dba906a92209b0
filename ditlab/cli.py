"""The `ditlab` command line: `ditlab flops`, `ditlab demo`, `ditlab train`, `ditlab sample`, ..."""
import argparse
import sys


def cmd_flops(args) -> None:
    from .flops import flops_table, format_table

    print(format_table(flops_table(method=args.method)))
    print("\nGflops: one forward pass of one image, multiply-add = 1 flop, VAE excluded (paper §4, Table 4).")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ditlab", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("flops", help="params and Gflops of the paper's configs next to Table 4")
    f.add_argument("--method", choices=["estimate", "fvcore"], default="estimate",
                   help="closed form (instant) or fvcore over a real forward pass (slower)")
    f.set_defaults(func=cmd_flops)
    return p


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])
