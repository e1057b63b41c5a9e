"""Templated instructions and descriptions for the four task types, with varied phrasing.

Instructions name *what* (the family and the target by colour and kind) but never *where* or *which hand*:
positions, sizes, orientations, obstacles and the acting hand are only visible in the first frame, so a model
that ignores the image cannot predict the motion. Descriptions (``motion_description``) do say which hand did
what, because they describe an observed motion.

* ``motion_generation``: an imperative ("pick up the red mug").
* ``motion_continuation``: the same, framed as continuing a motion whose first chunk the model is given.
* ``motion_description``: a third-person description of the clip (the text a model should produce).
* ``video_only``: an Ego4D-style narration ("the person picks up the red mug"), for clips without motion.
"""

from __future__ import annotations

import math

import numpy as np

from .layout import Layout, SceneObject

NOUNS: dict[str, tuple[str, ...]] = {
    "box": ("box", "block", "cube"),
    "cylinder": ("cylinder", "can", "tube"),
    "sphere": ("ball", "sphere"),
    "mug": ("mug", "cup"),
}

_IMPERATIVE: dict[str, tuple[str, ...]] = {
    "reach": ("reach for {t}", "reach toward {t}", "move your hand to {t}", "go to {t}", "put your hand near {t}"),
    "grasp": ("pick up {t}", "grab {t}", "grasp {t} and lift it", "take {t}", "lift {t} off the table", "get {t}"),
    "release": ("put {t} {rel} {r}", "place {t} {rel} {r}", "set {t} down {rel} {r}", "put it down {rel} {r}"),
    "pinch": (
        "pinch {t}",
        "pick up {t} with two fingers",
        "pinch {t} and lift it",
        "take {t} between thumb and finger",
    ),
    "point": ("point at {t}", "point to {t}", "show me {t}", "indicate {t} with your finger"),
    "wave": ("wave above {t}", "wave your hand over {t}", "wave hello over {t}", "give a wave above {t}"),
    "rotate": ("turn {t} {dir}", "rotate {t} {dir}", "twist {t} {dir}", "give {t} a {dir} turn"),
    "push": ("push {t} {way}", "slide {t} {way}", "nudge {t} {way}", "shove {t} {way}"),
    "pour": ("pour {t} into {r}", "pour from {t} into {r}", "tip {t} over {r}", "empty {t} into {r}"),
}
_TWO_HANDS: dict[str, tuple[str, ...]] = {
    "reach": ("reach for {a} and {b}", "reach toward {a} and {b} at the same time"),
    "grasp": ("pick up {a} and {b}", "grab {a} and {b}", "take {a} and {b}, one in each hand"),
    "pinch": ("pinch {a} and {b}", "pick up {a} and {b} with your fingertips"),
    "point": ("point at {a} and {b}", "point to {a} and to {b}"),
    "wave": ("wave above {a} and {b}", "wave both hands over {a} and {b}"),
    "push": ("push {a} {way_a} and {b} {way_b}", "slide {a} {way_a} and {b} {way_b}"),
}
_BIMANUAL = ("lift {t} with both hands", "pick up {t} using both hands", "raise {t} with two hands", "lift {t}")
_POLITE = ("{x}", "{x}", "{x}", "please {x}", "{x}, please", "can you {x}?", "now {x}", "I'd like you to {x}")
_CONTINUE = (
    "continue: {x}",
    "keep going and {x}",
    "finish the motion: {x}",
    "continue the movement to {x}",
    "{x} (continue from here)",
)
_NARRATION: dict[str, tuple[str, ...]] = {
    "reach": ("reaches for {t}",),
    "grasp": ("picks up {t}", "grabs {t}"),
    "release": ("puts {t} {rel} {r}",),
    "pinch": ("pinches {t}",),
    "point": ("points at {t}",),
    "wave": ("waves above {t}",),
    "rotate": ("turns {t} {dir}",),
    "push": ("pushes {t} {way}",),
    "pour": ("pours {t} into {r}",),
}
_SUBJECTS = ("the person", "someone", "a hand", "the user")


def name_object(rng: np.random.Generator, obj: SceneObject) -> str:
    """'the red mug' with a random synonym; 'cube' only for boxes that are nearly cubic."""
    nouns = list(NOUNS[obj.kind])
    if obj.kind == "box" and max(obj.size) > 1.3 * min(obj.size):
        nouns.remove("cube")
    prefix = "small " if max(obj.size) < 0.022 and rng.uniform() < 0.5 else ""
    large = "large " if obj.kind == "box" and max(obj.size) > 0.09 and rng.uniform() < 0.6 else ""
    return f"the {large}{prefix}{obj.colour} {rng.choice(nouns)}"


def _direction_word(angle: float) -> str:
    return "counterclockwise" if angle > 0 else "clockwise"


def _way(rng: np.random.Generator, layout: Layout, spec: dict) -> str:
    if spec["how"] == "toward":
        return f"toward {name_object(rng, layout.object(spec['reference']))}"
    return {
        "left": str(rng.choice(["to the left", "left", "leftward"])),
        "right": str(rng.choice(["to the right", "right", "rightward"])),
        "forward": str(rng.choice(["forward", "away from you", "further back on the table"])),
    }[spec["how"]]


def _fill(rng: np.random.Generator, template: str, layout: Layout, side: str | None = None) -> str:
    side = side or next(iter(layout.targets))
    values = {"t": name_object(rng, layout.object(layout.targets[side]))}
    params = layout.params
    if layout.family == "release":
        values["r"] = name_object(rng, layout.object(params["reference"]))
        values["rel"] = {"on": str(rng.choice(["on", "on top of"]))}.get(params["relation"], params["relation"])
    if layout.family == "pour":
        values["r"] = name_object(rng, layout.object(params["receiver"]))
    if layout.family == "rotate":
        values["dir"] = _direction_word(params["angle"])
    if layout.family == "push":
        values["way"] = _way(rng, layout, params["push"][side])
    return template.format(**{k: values.get(k, "") for k in ("t", "r", "rel", "dir", "way")})


def imperative(rng: np.random.Generator, layout: Layout, polite: bool = True) -> str:
    """The instruction of a clip: what to do with which object, never where or with which hand."""
    sides = list(layout.targets)
    if layout.params.get("bimanual"):
        text = str(rng.choice(_BIMANUAL)).format(t=name_object(rng, layout.object(layout.targets["right"])))
    elif len(sides) == 2:
        template = str(rng.choice(_TWO_HANDS[layout.family]))
        first, second = sides if rng.uniform() < 0.5 else sides[::-1]
        values = {
            "a": name_object(rng, layout.object(layout.targets[first])),
            "b": name_object(rng, layout.object(layout.targets[second])),
        }
        if layout.family == "push":
            values["way_a"] = _way(rng, layout, layout.params["push"][first])
            values["way_b"] = _way(rng, layout, layout.params["push"][second])
        text = template.format(**values)
    else:
        text = _fill(rng, str(rng.choice(_IMPERATIVE[layout.family])), layout)
    return str(rng.choice(_POLITE)).format(x=text) if polite else text


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def describe(rng: np.random.Generator, layout: Layout) -> str:
    """A third-person description of the clip, with the details visible in the video (hands, heights, angles)."""
    parts = []
    over = any(o.role == "obstacle" for o in layout.objects)
    for side in layout.targets:
        hand = f"the {side} hand"
        target = name_object(rng, layout.object(layout.targets[side]))
        family = layout.family
        if layout.params.get("bimanual"):
            lift_cm = round(100 * layout.params["lift"])
            parts.append(f"both hands grip {target} from the sides and lift it about {lift_cm} cm")
            break
        if family in ("grasp", "pinch"):
            how = "between thumb and index finger" if family == "pinch" else "in its palm"
            lift_cm = round(100 * layout.params.get("lift", 0.1))
            way = "over the obstacle " if over else ""
            text = f"{hand} reaches {way}for {target}, takes it {how} and lifts it about {lift_cm} cm"
        elif family == "reach":
            text = f"{hand} reaches {'over the obstacle ' if over else ''}toward {target} and stops just short of it"
        elif family == "release":
            text = f"{hand} lowers {target} and sets it down {_fill(rng, '{rel} {r}', layout, side)}, then lets go"
        elif family == "point":
            text = f"{hand} points its index finger at {target}"
        elif family == "wave":
            text = f"{hand} rises above {target} and waves"
        elif family == "rotate":
            degrees = round(math.degrees(abs(layout.params["angle"])) / 5) * 5
            turn = _direction_word(layout.params["angle"])
            text = f"{hand} grips {target} from above and turns it about {degrees} degrees {turn}"
        elif family == "push":
            spec = layout.params["push"][side]
            text = f"{hand} pushes {target} {_way(rng, layout, spec)} by about {round(100 * spec['distance'])} cm"
        else:  # pour
            text = f"{hand} lifts {target} and tips it over {_fill(rng, '{r}', layout, side)} as if pouring"
        parts.append(text)
    joined = "; ".join(parts) if len(parts) > 1 else parts[0]
    return _capitalise(joined) + "."


def narration(rng: np.random.Generator, layout: Layout) -> str:
    """An Ego4D-style narration for video-only clips."""
    subject = str(rng.choice(_SUBJECTS))
    if layout.params.get("bimanual"):
        verb = f"lifts {name_object(rng, layout.object(layout.targets['right']))} with both hands"
    else:
        verb = _fill(rng, str(rng.choice(_NARRATION[layout.family])), layout)
        if len(layout.targets) == 2:
            other = name_object(rng, layout.object(layout.targets[list(layout.targets)[1]]))
            verb = f"{verb} and {other}" if layout.family != "push" else verb
    return _capitalise(f"{subject} {verb}.")


def instruction_for(rng: np.random.Generator, layout: Layout, task_type: str) -> str:
    """The text stored in the row's ``instruction`` column for ``task_type``."""
    if task_type == "motion_generation":
        return _capitalise(imperative(rng, layout))
    if task_type == "motion_continuation":
        return _capitalise(str(rng.choice(_CONTINUE)).format(x=imperative(rng, layout, polite=False)))
    if task_type == "motion_description":
        return describe(rng, layout)
    if task_type == "video_only":
        return narration(rng, layout) if rng.uniform() < 0.5 else _capitalise(imperative(rng, layout))
    raise ValueError(f"task_type must be one of the schema's TASK_TYPES, got {task_type!r}.")
