"""`--help` that shows every option's default: the formatter of the `ditlab` command line, and the help text of the
train flags, taken from TrainConfig's own comments (what a None default means is said, not printed as None)."""
import argparse
import inspect
import re

from .training import TrainConfig

# what a TrainConfig field left at None means, where it is not the recipe's choice (--help shows it as the default)
TRAIN_NONE = dict(image_size="the data's own size", channels="the data's own", limit="every image",
                  vae="none: pixel space", objective="the recipe's (ddpm)", path="linear", prediction="velocity",
                  loss_weight="none", t_sampling="uniform", grad_clip="no clipping")


def field_comments() -> dict[str, str]:
    """TrainConfig's inline comments by field: the help text of its flags."""
    src = inspect.getsource(TrainConfig)
    return {m[1]: m[2].strip() for m in re.finditer(r"^    (\w+): [^=\n]+=[^#\n]*#\s*(.*)$", src, re.M)}


class Formatter(argparse.RawDescriptionHelpFormatter):
    """--help shows every option's default, unless its help already says it (or the default is None: the help
    says what None means)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)".strip()


def document(parser: argparse.ArgumentParser) -> None:
    """Options without help text still show their default (argparse prints nothing for help=None)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                document(sub)
        elif action.option_strings and action.help is None:
            action.help = "" if action.default is None else "(default: %(default)s)"


def none_means(parser: argparse.ArgumentParser, **meaning: str) -> None:
    """--help says what an option left at None does: `none_means(s, device="cpu")`."""
    for action in parser._actions:
        if action.dest in meaning:
            action.help = f"{action.help or ''} (default: {meaning[action.dest]})".strip()
