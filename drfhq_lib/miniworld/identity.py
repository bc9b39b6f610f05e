"""Identities of the mini world: a standard-normal vector z -> a :class:`Character`.

Identity ``i`` of a run with seed ``S`` is

    z = torch.randn(Z_DIM, generator=torch.Generator().manual_seed(identity_seed(S, i)),
                    dtype=torch.float64)

with ``identity_seed(S, i)`` the first 8 bytes (little-endian, top bit cleared) of
``sha256(f"drfhq-miniworld:{S}:{i}")``, so identities never depend on how many were drawn
before, on the order of drawing, or on the platform. ``character_from_z(z)`` is smooth in z:
every parameter is a normal-CDF (Phi), tanh or softmax mapping of its coordinates to a range,
and colours are piecewise-linear palette lookups of such values (no discrete jumps), so a
generator can later be trained with z as its input. ``Z_LAYOUT`` names each coordinate.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math

import torch

from drfhq_lib.miniworld.character import Character

FACE_MODIFIERS = (
    "nose/nose-scale-horiz", "nose/nose-scale-vert", "nose/nose-hump", "nose/nose-point-width",
    "mouth/mouth-scale-horiz", "mouth/mouth-lowerlip-volume", "mouth/mouth-upperlip-volume",
    "chin/chin-width", "chin/chin-prominent", "eyes/eye-scale", "head/head-fat",
    "cheek/cheek-bones",
)
Z_LAYOUT = (
    ("gender", "race_african", "race_asian", "race_caucasian", "age", "muscle", "weight")
    + tuple(f"face:{m}" for m in FACE_MODIFIERS)
    + ("skin_lightness", "skin_warmth", "iris", "hair_lightness", "hair_red", "hairline",
       "shirt_r", "shirt_g", "shirt_b", "yaw", "pitch", "smile", "brows_up")
)
Z_DIM = len(Z_LAYOUT)  # 32
Z_INDEX = {name: i for i, name in enumerate(Z_LAYOUT)}

# Palettes (sRGB 0..255), looked up piecewise-linearly.
SKIN_BY_RACE = {"african": (120, 80, 58), "asian": (214, 172, 138), "caucasian": (228, 186, 163)}
IRIS_PALETTE = [(0.0, (45, 30, 20)), (0.35, (90, 60, 35)), (0.55, (110, 92, 50)),
                (0.7, (88, 108, 78)), (0.85, (95, 115, 130)), (1.0, (70, 110, 160))]
HAIR_PALETTE = [(0.0, (22, 18, 16)), (0.3, (50, 35, 25)), (0.55, (95, 65, 40)),
                (0.8, (140, 100, 60)), (1.0, (190, 160, 110))]
AUBURN = (140, 62, 32)
GREY_HAIR = (165, 160, 155)
TROUSERS = (45, 45, 55)


def identity_seed(seed: int, index: int, stream: str = "drfhq-miniworld") -> int:
    """The generator seed of identity ``index`` of a run with ``seed`` (63 bits)."""
    digest = hashlib.sha256(f"{stream}:{int(seed)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2 ** 63 - 1)


def draw_z(seed: int, index: int) -> torch.Tensor:
    """The identity vector (Z_DIM,) float64 of identity ``index``: a standard-normal draw put on
    the sphere of radius sqrt(Z_DIM).

    Why the sphere: StyleGAN2's mapping network normalises z to unit second moment before its
    first layer, so a generator sees only z's direction. Identities that depend on the direction
    alone are then exactly what a network taking z = this vector can represent; each coordinate
    is still close to standard normal (Z_DIM = 32).
    """
    gen = torch.Generator().manual_seed(identity_seed(seed, index))
    u = torch.randn(Z_DIM, generator=gen, dtype=torch.float64)
    return u * (Z_DIM ** 0.5 / u.norm())


def noise_seed(seed: int, index: int) -> int:
    """Seed of the per-image nuisance noise (P-style grain and backdrop), not part of z."""
    return identity_seed(seed, index, "drfhq-miniworld-noise") % (2 ** 31)


def identity_id(index: int) -> str:
    return f"{int(index):06d}"


def _phi(x: float) -> float:
    """Standard normal CDF."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _lerp(a, b, t: float) -> tuple:
    return tuple(x + (y - x) * t for x, y in zip(a, b))


def _palette(points, t: float) -> tuple:
    t = min(max(t, 0.0), 1.0)
    for (t0, c0), (t1, c1) in zip(points, points[1:]):
        if t <= t1:
            return _lerp(c0, c1, (t - t0) / (t1 - t0))
    return points[-1][1]


def _srgb_to_lin(c: float) -> float:
    c = c / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _lin_to_srgb(c: float) -> float:
    c = min(max(c, 0.0), 1.0)
    return 255 * (c * 12.92 if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055)


def _round(values, ndigits: int = 3) -> tuple:
    return tuple(round(float(v), ndigits) for v in values)


def character_from_z(z, name: str = "", noise: int = 0) -> Character:
    """The character of identity vector ``z`` (length Z_DIM; any real values)."""
    z = [float(v) for v in (z.tolist() if hasattr(z, "tolist") else z)]
    if len(z) != Z_DIM:
        raise ValueError(f"z has {len(z)} values, expected {Z_DIM} (see Z_LAYOUT)")
    g = lambda key: z[Z_INDEX[key]]  # noqa: E731

    gender = _phi(1.6 * g("gender"))
    logits = [1.6 * g("race_african"), 1.6 * g("race_asian"), 1.6 * g("race_caucasian")]
    top = max(logits)
    weights = [math.exp(v - top) for v in logits]
    race = {r: w / sum(weights) for r, w in zip(("african", "asian", "caucasian"), weights)}
    age = 18.0 + 60.0 * _phi(0.9 * g("age") - 0.2)
    muscle = 0.2 + 0.6 * _phi(g("muscle"))
    weight = 0.2 + 0.6 * _phi(g("weight"))
    face = {m: 0.8 * math.tanh(0.6 * g(f"face:{m}")) for m in FACE_MODIFIERS}

    # Skin: the race mix of three base tones (in linear light), then lightness and warmth.
    lin = [sum(race[r] * _srgb_to_lin(SKIN_BY_RACE[r][c]) for r in race) for c in range(3)]
    light = math.exp(0.18 * math.tanh(0.8 * g("skin_lightness")))
    warm = math.tanh(0.8 * g("skin_warmth"))
    lin = [lin[0] * light * (1 + 0.05 * warm), lin[1] * light, lin[2] * light * (1 - 0.08 * warm)]
    skin = tuple(_lin_to_srgb(c) for c in lin)

    pale = race["caucasian"] - 0.5
    iris = _palette(IRIS_PALETTE, _phi(1.2 * g("iris") - 1.0 + 2.2 * pale))
    hair = _palette(HAIR_PALETTE, _phi(g("hair_lightness") - 1.2 + 2.0 * pale))
    hair = _lerp(hair, AUBURN, 0.5 * _phi(2.0 * g("hair_red") - 3.0))
    grey = 0.85 / (1.0 + math.exp(-(age - 55.0) / 6.0))
    brow = _lerp(tuple(0.8 * c for c in hair), GREY_HAIR, 0.5 * grey)
    hair = _lerp(hair, GREY_HAIR, grey)
    recede = _phi(g("hairline") + (age - 45.0) / 15.0)
    hairline = 0.15 * gender * recede + 0.03 * (1 - gender) * _phi(g("hairline"))
    # Clothing: a grey level with a muted tint (real shirts are rarely saturated).
    raw = [_phi(0.9 * g(k)) for k in ("shirt_r", "shirt_g", "shirt_b")]
    mean = sum(raw) / 3
    shirt = tuple(30.0 + 170.0 * (mean + 0.45 * (c - mean)) for c in raw)

    smile = 0.45 * _phi(1.2 * g("smile") - 0.3)
    brows = 0.3 * _phi(1.2 * g("brows_up") - 0.8)
    expression = {"mouth-corner-puller": smile, "eyebrows-left-inner-up": brows,
                  "eyebrows-right-inner-up": brows}
    return Character(
        name=name, gender=gender, age_years=age, race=race, muscle=muscle, weight=weight,
        face=face, expression=expression, skin_srgb=_round(skin), iris_srgb=_round(iris),
        brow_srgb=_round(brow), shirt_srgb=_round(shirt), trousers_srgb=TROUSERS,
        hair_srgb=_round(hair), hairline=hairline,
        yaw_deg=15.0 * math.tanh(g("yaw") / 1.5), pitch_deg=4.0 + 4.0 * math.tanh(g("pitch") / 1.5),
        noise_seed=int(noise),
    )


def identity(seed: int, index: int) -> tuple[torch.Tensor, Character]:
    """(z, character) of identity ``index`` of a run with ``seed``."""
    z = draw_z(seed, index)
    return z, character_from_z(z, identity_id(index), noise_seed(seed, index))


def character_params(ch: Character) -> dict:
    """The character's parameters as plain JSON-able values."""
    return dataclasses.asdict(ch)


def identity_params(ch: Character) -> list[float]:
    """Every numeric parameter of a character, flattened in a fixed order (for comparisons)."""
    out = [ch.gender, ch.age_years, ch.muscle, ch.weight, ch.hairline, ch.yaw_deg, ch.pitch_deg]
    out += [ch.race[k] for k in sorted(ch.race)]
    out += [ch.face[k] for k in sorted(ch.face)]
    out += [ch.expression[k] for k in sorted(ch.expression)]
    for colour in (ch.skin_srgb, ch.iris_srgb, ch.brow_srgb, ch.hair_srgb, ch.shirt_srgb):
        out += list(colour)
    return [float(v) for v in out]


def all_target_paths(data) -> list[str]:
    """Every shape target an identity of ``character_from_z`` can use."""
    from drfhq_lib.miniworld.character import (Character, character_target_weights,
                                               expression_target_weights)

    paths = set()
    races = {"african": 1.0, "asian": 1.0, "caucasian": 1.0}
    for gender in (0.0, 1.0):
        for age in (18.0, 30.0, 80.0):
            for muscle in (0.2, 0.8):
                for weight in (0.2, 0.8):
                    ch = Character("", gender, age, races, muscle, weight,
                                   face={m: v for m in FACE_MODIFIERS for v in (0.5,)})
                    paths.update(character_target_weights(ch, data))
                    ch = Character("", gender, age, races, muscle, weight,
                                   face={m: -0.5 for m in FACE_MODIFIERS})
                    paths.update(character_target_weights(ch, data))
    expr = Character("", 0.5, 30.0, races, expression={"mouth-corner-puller": 1.0,
                                                       "eyebrows-left-inner-up": 1.0,
                                                       "eyebrows-right-inner-up": 1.0})
    paths.update(expression_target_weights(expr))
    return sorted(paths)


def preload_targets(data) -> int:
    """Read every target identities can use now (a long run then never waits on one)."""
    paths = all_target_paths(data)
    for path in paths:
        data.target(path)
    return len(paths)
