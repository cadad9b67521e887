"""The street engine's camera: exposure, white balance, tone, lens and sensor as look attributes of the render.

A post-processing stage on the rasterized frame, in torch, with its own parametrization. Every attribute is 0 at
the neutral camera, and a row whose camera attributes are all 0 is returned untouched, so a camera engine at the
neutral camera gives today's renders bit for bit. The attributes are marked ``look`` in the attribute space
(:mod:`scenefit.fitting.look`): the fit matches them with the look term, not with its look-invariant features.

In order, per row (``x`` linear RGB in [0, 1], ``r`` the distance from the centre, 1 at the corners):

    exposure         x *= 2^exposure                                         (EV stops)
    wb_temperature   R *= 2^(0.25 t), B *= 2^(-0.25 t)                      (warm > 0 > cool)
    wb_tint          G *= 2^(-0.15 u)                                        (magenta > 0 > green)
    haze             x = (1 - h) x + h * (0.78, 0.80, 0.84)                  (a uniform veil of airlight)
    contrast         x = 0.5 + 2^c (x - 0.5)
    saturation       x = Y + 2^s (x - Y),  Y = 0.299 R + 0.587 G + 0.114 B
    gamma            x = max(x, 0)^(2^g)
    lens_blur        Gaussian blur, sigma = lens_blur / 1000 * image width (px)
    vignetting       x *= 1 / (1 + v r^2)^2
    sensor_noise     x += n * (width / 320) * sqrt(max(x, 0) + 0.1) * N(0, 1)   (std at a 320 px wide frame;
                     narrower frames average it, as an area downsample would)
    then clamping to [0, 1] and 8-bit quantization, like every render of the engine.

Blur and noise are set relative to the frame width, so the engine resized to the fitting resolution shows the
same camera. The noise of row ``i`` comes from ``seeds[i]`` alone (:mod:`scenefit.seeding`, its own stream).
:func:`develop_camera` is the same chain differentiable in the camera (the same noise, scaled; the quantization
passed straight through): the engine's :meth:`~scenefit.engines.street.StreetEngine.render_look_parts`, through
which the fit refines a look against the engine itself (:mod:`scenefit.fitting.look_refine`).
What this camera cannot render: a global channel-mixing (colour-grading) matrix beyond per-channel gains and
desaturation, tone curves other than a power law around a fixed pivot, depth-dependent fog (the haze is uniform;
the renderer's own fog is set by ``StreetConfig.fog_distance``), lens distortion and chromatic aberration.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from scenefit.attributes import Attribute
from scenefit.seeding import row_normal

CAMERA_ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("exposure", -1.5, 1.5, "EV", look=True),
    Attribute("wb_temperature", -1.0, 1.0, "rel", look=True),
    Attribute("wb_tint", -1.0, 1.0, "rel", look=True),
    Attribute("haze", 0.0, 0.6, "rel", look=True),
    Attribute("contrast", -1.0, 1.0, "log2", look=True),
    Attribute("saturation", -1.5, 1.0, "log2", look=True),
    Attribute("gamma", -1.0, 1.0, "log2", look=True),
    Attribute("lens_blur", 0.0, 6.0, "1e-3 width", look=True),
    Attribute("vignetting", 0.0, 0.6, "rel", look=True),
    Attribute("sensor_noise", 0.0, 0.06, "std", look=True),
)
"""The camera's attributes, in the order they are applied; 0 is the neutral camera for each."""

CAMERA_NAMES: tuple[str, ...] = tuple(a.name for a in CAMERA_ATTRIBUTES)
NOISE_STREAM = 11
"""The :mod:`scenefit.seeding` stream of the sensor noise (the layout draws from numpy generators, not streams)."""
REFERENCE_WIDTH = 320
"""Frame width (px) at which ``sensor_noise`` is the noise's standard deviation per unit signal."""
_AIRLIGHT = (0.78, 0.80, 0.84)
_LUMA = (0.299, 0.587, 0.114)
_MAX_BLUR = max(a.high for a in CAMERA_ATTRIBUTES if a.name == "lens_blur") / 1000.0


def blur_rows(images: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Blur images (B, C, H, W) with a per-row Gaussian of ``sigma`` (B,) px over a fixed half-width ``radius``
    (so a row never depends on another row's sigma); reflect padding; sigma 0 leaves a row unchanged."""
    b, c, h, w = images.shape
    radius = max(1, min(radius, h - 1, w - 1))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    s = sigma.to(images).clamp(min=1e-4)[:, None]
    k = torch.exp(-0.5 * (x[None] / s) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, K)
    flat = images.reshape(1, b * c, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), k[:, None, None, :], groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), k[:, None, :, None], groups=b * c)
    return flat.reshape(b, c, h, w)


def apply_camera(images: torch.Tensor, camera: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
    """The camera stage (module doc) on RGB frames (B, 3, H, W) in [0, 1] with camera rows (B, 10) in the order of
    :data:`CAMERA_ATTRIBUTES` (natural units) and per-row ``seeds`` (B,) int64; returns (B, 3, H, W) multiples of
    1/255. Rows at the neutral camera (all 0) come back unchanged."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"the camera needs RGB frames (B, 3, H, W), got shape {tuple(images.shape)}")
    if camera.shape != (images.shape[0], len(CAMERA_ATTRIBUTES)):
        raise ValueError(f"the camera needs rows of shape ({images.shape[0]}, {len(CAMERA_ATTRIBUTES)}), got {tuple(camera.shape)}")
    active = (camera != 0).any(1)
    if not bool(active.any()):
        return images
    idx = active.nonzero()[:, 0]
    out = images.clone()
    noise = camera_noise(seeds[idx.cpu()], *images.shape[-2:])
    out[idx] = develop_camera(images[idx], camera[idx].to(images.device), noise).detach().to(images.dtype)
    return out


def camera_noise(seeds: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The unit sensor noise N(0, 1) (B, 3, height, width) of rows with ``seeds`` (B,) int64 (CPU, float32): what
    :func:`apply_camera` scales by ``sensor_noise`` for a frame of that size."""
    return row_normal(seeds.to(torch.int64).cpu(), 3 * height * width, stream=NOISE_STREAM).view(-1, 3, height, width)


def develop_camera(images: torch.Tensor, camera: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """:func:`apply_camera` made differentiable in ``camera``: frames (B, 3, H, W) in [0, 1], camera rows (B, 10)
    (natural units, any values, neutral rows included) and the rows' unit noise (B, 3, H, W) of :func:`camera_noise`.

    Returns (B, 3, H, W): in the forward pass exactly the 8-bit values :func:`apply_camera` gives for the same seeds
    (a neutral row: the frame itself, when the frame holds 8-bit values); the gradient passes the quantization
    straight through (that of the clamped, unquantized chain). The clamp to [0, 1] stops the gradient of saturated
    pixels, and blur and noise have none at exactly 0 (a Gaussian's width is flat there).
    """
    x = _chain(images.float(), camera.float(), noise.to(images.device, torch.float32)).clamp(0, 1)
    return ((x.detach() * 255).round() / 255) + (x - x.detach())


def _chain(x: torch.Tensor, cam: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The camera chain of the module doc on frames (B, 3, H, W) with camera rows (B, 10) and unit noise (B, 3, H, W),
    before clamping and quantization; differentiable in ``cam``."""
    _, _, h, w = x.shape
    p = {name: cam[:, i, None, None, None] for i, name in enumerate(CAMERA_NAMES)}  # (B, 1, 1, 1)
    dev = x.device
    x = x * torch.exp2(p["exposure"])
    gains = torch.cat([torch.exp2(0.25 * p["wb_temperature"]), torch.exp2(-0.15 * p["wb_tint"]),
                       torch.exp2(-0.25 * p["wb_temperature"])], 1)
    x = x * gains
    x = (1 - p["haze"]) * x + p["haze"] * torch.tensor(_AIRLIGHT, device=dev)[None, :, None, None]
    x = 0.5 + torch.exp2(p["contrast"]) * (x - 0.5)
    luma = (x * torch.tensor(_LUMA, device=dev)[None, :, None, None]).sum(1, keepdim=True)
    x = luma + torch.exp2(p["saturation"]) * (x - luma)
    x = x.clamp(min=0) ** torch.exp2(p["gamma"])
    x = blur_rows(x, cam[:, CAMERA_NAMES.index("lens_blur")] / 1000.0 * w, int(math.ceil(3 * _MAX_BLUR * w)))
    yy = (torch.arange(h, device=dev) + 0.5 - h / 2) / (h / 2)
    xx = (torch.arange(w, device=dev) + 0.5 - w / 2) / (w / 2)
    r2 = (xx[None] ** 2 + yy[:, None] ** 2) / 2  # 1 at the corners
    x = x / (1 + p["vignetting"] * r2) ** 2
    return x + p["sensor_noise"] * (w / REFERENCE_WIDTH) * torch.sqrt(x.clamp(min=0) + 0.1) * noise
