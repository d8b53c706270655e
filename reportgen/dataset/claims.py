"""What a channel's dataset ranking may claim, in the words the report uses.

An order among images with exactly the same score says nothing about the channel: it is the
order of the dataset's files. A channel whose peak is the same on every image (a dead channel's
0) ranks nothing at all; inside a ranking, tied examples are named, and so is a tie of the
last one shown with images that are not shown.
"""
from __future__ import annotations

from reportgen.dataset.layer import Ranking
from reportgen.formatting import format_number


def ranking_note(ranking: Ranking, count: int, value: float) -> str | None:
    """One sentence on what ``ranking`` cannot claim, or None when every place is earned.

    ``count`` is how many images the dataset run used and ``value`` the score they all share
    when the ranking is ``constant``.
    """
    if ranking.constant:
        if value == 0:
            return (f"Never above 0 on this dataset: all {count:,} images peak at exactly 0, "
                    "so none is ranked above another.")
        return (f"Tied on all {count:,} images (each peaks at exactly "
                f"{format_number(value)}), so none is ranked above another.")
    parts = [f"{first + 1}–{last + 1} tie at {format_number(ranking.examples[first].score)}"
             for first, last in ranking.ties]
    if ranking.beyond:
        last = len(ranking.examples)
        if ranking.ties and ranking.ties[-1][1] == last - 1:
            parts[-1] += ", as do images not shown"
        else:
            parts.append(f"{last} ties at {format_number(ranking.examples[-1].score)} with "
                         "images not shown")
    if not parts:
        return None
    return f"Examples {'; '.join(parts)}: tied images are in the dataset's file order, not ranked."


def inhibiting_note(ranking: Ranking, count: int) -> str | None:
    """:func:`ranking_note` for the most inhibiting images, or why there are none."""
    if not ranking.examples:
        return f"None of the {count:,} images takes this channel's output below 0."
    return ranking_note(ranking, count, 0.0)
