"""The experiment page's charts, drawn on the server as SVG with pygal.

From the results API's daily snapshots (``/daily``): the cumulative absolute effect of a
metric for each treatment, day by day, with its 95% interval (pygal's error bars at each
day, and the interval's ends as dashed lines: the band), and the units per variant over
time. pygal writes SVG whose text it escapes.

The page's Content-Security-Policy allows no inline style or script, and the charts come
into the page through htmx after it loaded. So each chart is drawn without pygal's own
``<style>`` and script (its optional JavaScript tooltips are not used), and one stylesheet
for every chart, ``chart_stylesheet()``, is made once from pygal's CSS templates with the
same style and served from this origin. Each value is also in the SVG as a ``<desc>``
(what a screen reader reads), and each chart has a ``<title>``.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import pygal
from markupsafe import Markup
from pygal.style import Style

#: Series colours (one per treatment or variant); the last one is the "no effect" line.
COLOURS = ("#1f5fa8", "#b5651d", "#2e7d32", "#6a1b9a", "#00838f", "#ad1457")
NO_EFFECT_COLOUR = "#888888"
#: Variants of an experiment at most (``schemas.limits``'s 32), for the colour rules.
MAX_SERIES = 32
_STYLE_ELEMENT = re.compile(r"<defs><style[^>]*>(.*?)</style>", re.DOTALL)
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.DOTALL)
_INLINE_STYLE = re.compile(r'\sstyle="[^"]*"')
_CHART_ID = re.compile(r"#chart-[0-9a-f-]{36}")


def _style(colours: tuple[str, ...]) -> Style:
    return Style(
        background="transparent",
        plot_background="#ffffff",
        foreground="#222222",
        foreground_strong="#111111",
        foreground_subtle="#888888",
        colors=colours,
        font_family="system-ui, sans-serif",
        label_font_size=12,
        major_label_font_size=12,
        legend_font_size=13,
        title_font_size=15,
    )


def _effect_colours() -> tuple[str, ...]:
    """Series 0 is the "no effect" line; treatment i has series 1+3i (effect), 2+3i and
    3+3i (the interval's ends), all in its colour."""
    per_treatment = [COLOURS[i % len(COLOURS)] for i in range(MAX_SERIES)]
    return (NO_EFFECT_COLOUR, *[colour for colour in per_treatment for _ in range(3)])


_EFFECT_STYLE = _style(_effect_colours())
_UNITS_STYLE = _style(tuple(COLOURS[i % len(COLOURS)] for i in range(MAX_SERIES)))


def _chart(title: str, y_title: str, style: Style, days: list[str]) -> pygal.Line:
    chart = pygal.Line(
        title=title,
        y_title=y_title,
        style=style,
        js=[],
        disable_xml_declaration=True,
        width=760,
        height=320,
        show_x_guides=False,
        legend_at_bottom=True,
        truncate_legend=-1,
        x_label_rotation=30,
        dots_size=3,
        show_minor_x_labels=len(days) <= 14,
        x_labels_major_count=14,
    )
    chart.x_labels = days
    return chart


def _inline(svg: str, kind: str) -> Markup:
    svg = _STYLE_ELEMENT.sub("<defs>", svg)
    svg = _SCRIPT.sub("", svg)
    svg = _INLINE_STYLE.sub("", svg)
    svg = svg.replace("<svg ", f'<svg data-chart="{kind}" role="img" ', 1)
    # pygal escaped every text it was given (etree); the SVG is ours to place.
    return Markup(svg)


def effect_chart(daily: dict[str, Any], metric: str) -> Markup | None:
    """The cumulative absolute effect of ``metric`` for each treatment, with its interval;
    None when no day has a figure for it."""
    days = [day["day"] for day in daily["days"]]
    treatments: dict[str, dict[str, dict[str, Any]]] = {}
    for day in daily["days"]:
        for figure in day["metrics"]:
            if figure["metric"] == metric:
                treatments.setdefault(figure["variant_key"], {})[day["day"]] = figure
    if not any(
        f["absolute_effect"] is not None for by_day in treatments.values() for f in by_day.values()
    ):
        return None
    chart = _chart(
        f"{metric}: cumulative effect (treatment - control), 95% interval",
        "absolute effect",
        _EFFECT_STYLE,
        days,
    )
    chart.add("no effect", [0.0] * len(days), show_dots=False)
    for variant, by_day in sorted(treatments.items())[:MAX_SERIES]:
        figures = [by_day.get(day) for day in days]
        chart.add(
            variant,
            [
                None
                if f is None or f["absolute_effect"] is None
                else {
                    "value": f["absolute_effect"],
                    "ci": {"low": f["absolute_ci_low"], "high": f["absolute_ci_high"]},
                }
                if f.get("absolute_ci_low") is not None
                else f["absolute_effect"]
                for f in figures
            ],
        )
        for bound in ("absolute_ci_low", "absolute_ci_high"):
            chart.add(
                f"{variant} 95% {'low' if bound.endswith('low') else 'high'}",
                [None if f is None else f.get(bound) for f in figures],
                show_dots=False,
            )
    return _inline(chart.render(is_unicode=True), "effect")


def units_chart(daily: dict[str, Any]) -> Markup | None:
    """Units per variant, cumulative, day by day; None without days."""
    if not daily["days"]:
        return None
    days = [day["day"] for day in daily["days"]]
    chart = _chart("Units per variant over time", "units", _UNITS_STYLE, days)
    variants: dict[str, dict[str, int]] = {}
    for day in daily["days"]:
        for variant in day["variants"]:
            variants.setdefault(variant["variant_key"], {})[day["day"]] = variant["units"]
    for variant, by_day in list(variants.items())[:MAX_SERIES]:
        chart.add(variant, [by_day.get(day) for day in days])
    return _inline(chart.render(is_unicode=True), "units")


def _pygal_css(style: Style, kind: str) -> str:
    sample = _chart("", "", style, ["a", "b"])
    for index in range(len(style.colors)):
        sample.add(str(index), [0, 1])
    found = _STYLE_ELEMENT.search(sample.render(is_unicode=True))
    assert found is not None, "pygal drew no <style>"
    css = found.group(1).replace("&gt;", ">")
    return _CHART_ID.sub(f'svg[data-chart="{kind}"]', css)


@cache
def chart_stylesheet() -> str:
    """pygal's CSS for both kinds of chart, plus the dashed interval ends."""
    dashed = ", ".join(
        f'svg[data-chart="effect"] .serie-{2 + 3 * i} .line, '
        f'svg[data-chart="effect"] .serie-{3 + 3 * i} .line'
        for i in range(MAX_SERIES)
    )
    return "\n".join(
        [
            _pygal_css(_EFFECT_STYLE, "effect"),
            _pygal_css(_UNITS_STYLE, "units"),
            f"{dashed} {{ stroke-dasharray: 4, 3; stroke-width: 1; }}",
            'svg[data-chart="effect"] .serie-0 .line { stroke-width: 1; }',
        ]
    )
