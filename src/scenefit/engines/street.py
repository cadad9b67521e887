"""Procedural street scenes rasterized with OpenGL (moderngl, headless EGL).

The pieces: :mod:`~scenefit.engines.street_scene` (attribute table, camera, scene
data), :mod:`~scenefit.engines.street_layout` (attributes -> scenes, batched numpy),
:mod:`~scenefit.engines.street_mesh` (scenes -> triangle soup) and this module (the
engine). Each batch is uploaded once; every frame is drawn at the origin of the same
offscreen framebuffer and copied on the GPU into its slot of a pixel-pack buffer that
is read back once per pass, so a frame renders the same pixels wherever it falls in a
batch. One fragment shader writes the lit colour (attachment 0) and the flat
Cityscapes id (attachment 1) of the same fragment, so image and label agree pixel for
pixel; no antialiasing, nearest everything.

Example::

    engine = StreetEngine()                      # 96 x 320, KITTI-like focal length
    g = torch.Generator().manual_seed(0)
    attrs = engine.sample_initial(8, g)          # (8, 20)
    out = engine.render(attrs, generator=g)
    out["image"].shape, out["label"].shape       # (8, 3, 96, 320), (8, 96, 320)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np
import torch

from scenefit.attributes import AttributeSpace
from scenefit.engines.base import Develop, Engine, LabelTable
from scenefit.engines.labels import CLASS_NAMES, IGNORE_INDEX, id_to_train_id_table, label
from scenefit.engines.registry import register_engine
from scenefit.engines.street_camera import CAMERA_ATTRIBUTES, CAMERA_NAMES, apply_camera, camera_noise, develop_camera
from scenefit.engines.street_layout import layout_scenes
from scenefit.engines.street_mesh import scene_triangles
from scenefit.engines.street_scene import SKY, STREET_ATTRIBUTES, LayoutConfig, Scenes

KITTI_FOCAL_FRACTION = 721.5377 / 1242.0  # KITTI P2 fx / image width
_PACK_BYTES = 256 << 20  # at most this many bytes of colour read back per pass

_VERTEX = """
#version 330
uniform mat4 u_vp;
in vec3 in_pos;
in vec4 in_rgba;          // albedo rgb, a = Cityscapes id / 255
out vec3 v_world;
out vec3 v_albedo;
flat out float v_label;
void main() {
    v_world = in_pos;
    v_albedo = in_rgba.rgb;
    v_label = in_rgba.a;
    gl_Position = u_vp * vec4(in_pos, 1.0);
}
"""

_FRAGMENT = """
#version 330
uniform vec3 u_cam;
uniform vec3 u_sun_dir;
uniform float u_ambient;
uniform float u_direct;
uniform vec3 u_fog_color;
uniform float u_fog_distance;
uniform int u_lit;
in vec3 v_world;
in vec3 v_albedo;
flat in float v_label;
layout(location = 0) out vec4 f_color;
layout(location = 1) out uint f_label;  // integer target: never blended or dithered
void main() {
    vec3 c = v_albedo;
    if (u_lit == 1 && abs(v_label * 255.0 - float(%(sky)d)) > 0.5) {
        // flat face normal from screen derivatives: no normals in the vertex buffer
        vec3 n = normalize(cross(dFdx(v_world), dFdy(v_world)));
        vec3 to_cam = u_cam - v_world;
        if (dot(n, to_cam) < 0.0) n = -n;
        c *= u_ambient + u_direct * max(dot(n, u_sun_dir), 0.0);
        c = mix(c, u_fog_color, 1.0 - exp(-length(to_cam) / u_fog_distance));
    }
    f_color = vec4(clamp(c, 0.0, 1.0), 1.0);
    f_label = uint(v_label * 255.0 + 0.5);
}
""" % {"sky": SKY}


@dataclass(frozen=True)
class StreetConfig:
    """Renderer settings.

    height, width: image size (px); focal_fraction: focal length / width (KITTI by
    default); lighting: sun + ambient + fog (False: raw albedo, for tests);
    fog_distance (m): distance at which fog reaches 63%; frames_per_pass: frames
    drawn per draw/read cycle (changes speed and memory, never pixels); camera: add
    the ten camera attributes of :mod:`~scenefit.engines.street_camera` (look
    attributes, neutral at 0) after the twenty scene attributes.
    """

    height: int = 96
    width: int = 320
    focal_fraction: float = KITTI_FOCAL_FRACTION
    lighting: bool = True
    fog_distance: float = 600.0
    frames_per_pass: int = 32
    layout: LayoutConfig = field(default_factory=LayoutConfig)
    camera: bool = False

    def __post_init__(self) -> None:
        for name in ("height", "width", "frames_per_pass"):
            val = getattr(self, name)
            if not isinstance(val, int) or val < 1:
                raise ValueError(f"StreetConfig.{name} must be a positive int, got {val!r}")
        if self.height > 4096 or self.width > 4096:
            raise ValueError(f"StreetConfig image size {self.height}x{self.width} exceeds 4096; render smaller frames")
        if not 0.05 <= self.focal_fraction <= 10.0:
            raise ValueError(f"StreetConfig.focal_fraction must be in [0.05, 10], got {self.focal_fraction}")
        if not isinstance(self.camera, bool):
            raise ValueError(f"StreetConfig.camera must be true or false, got {self.camera!r}")
        if self.fog_distance <= 0:
            raise ValueError(f"StreetConfig.fog_distance must be > 0 m, got {self.fog_distance}")


# A plain, average street: the centre of the initial-scene distribution (natural units).
INITIAL_SCENE: dict[str, float] = {
    "camera_height": 1.65,
    "camera_pitch": 1.0,
    "road_width": 9.0,
    "lane_count": 1.0,  # index 1 -> two lanes
    "sidewalk_width_left": 2.5,
    "sidewalk_width_right": 2.5,
    "building_height_left": 12.0,
    "building_height_right": 12.0,
    "building_density_left": 0.5,
    "building_density_right": 0.5,
    "building_setback_left": 4.0,
    "building_setback_right": 4.0,
    "vegetation_density": 0.3,
    "car_density": 0.3,
    "car_offset": 5.0,
    "pole_spacing": 30.0,
    "person_density": 0.2,
    "road_curvature": 0.0,
    "sun_brightness": 0.6,
    "sky_color": 0.6,
}
NEUTRAL_CAMERA: dict[str, float] = {name: 0.0 for name in CAMERA_NAMES}
"""The neutral camera (every camera attribute at 0): the initial scenes' camera."""


@register_engine("street")
class StreetEngine(Engine):
    """Street scenes -> (image, Cityscapes label) by OpenGL rasterization; attribute table in ``street_scene``.

    Not differentiable. The GL context is created on first use and released by
    :meth:`close` (or ``with StreetEngine() as e:``); pickling drops it, so the
    engine can be sent to worker processes.
    """

    name = "street"
    differentiable = False
    channels = 3
    label_kind = "mask"
    labels = LabelTable(CLASS_NAMES, tuple(label(n).color for n in CLASS_NAMES), IGNORE_INDEX)

    def __init__(self, config: StreetConfig | None = None, **overrides) -> None:
        known = {f.name for f in fields(StreetConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"StreetEngine got unknown options {unknown}; known: {sorted(known)}")
        if isinstance(overrides.get("layout"), dict):  # from a config file
            overrides["layout"] = LayoutConfig(**overrides["layout"])
        base = config or StreetConfig()
        self.config = StreetConfig(**{**{k: getattr(base, k) for k in known}, **overrides})
        self.height, self.width = self.config.height, self.config.width
        self.focal_px = self.config.focal_fraction * self.width
        self.space = AttributeSpace(STREET_ATTRIBUTES + (CAMERA_ATTRIBUTES if self.config.camera else ()))
        self._gl: dict | None = None
        self._train_id_u8 = id_to_train_id_table().numpy().astype(np.uint8)  # (256,) id -> train id

    # ----------------------------------------------------------------- scenes
    def scenes(self, attrs: torch.Tensor, seeds: torch.Tensor) -> Scenes:
        """Lay out the frames of ``attrs`` (B, D) (natural units) with per-image integer ``seeds`` (B,)."""
        self.space.check(attrs)
        rows = attrs.detach().to("cpu", torch.float64).numpy()
        rngs = [np.random.default_rng(int(seed)) for seed in seeds.tolist()]
        return layout_scenes(rows, self.space.names, rngs, self.focal_px, self.height, self.width, self.config.layout)

    def _frames(self, attrs: torch.Tensor, seeds: torch.Tensor) -> dict[str, torch.Tensor]:
        """The rasterized frames (before the camera) of :meth:`render_scenes`, on the CPU; empty batches are only
        checked against the space."""
        if attrs.shape[0] == 0:
            self.space.check(attrs)
            h, w = self.height, self.width
            return {"image": torch.zeros(0, 3, h, w), "label": torch.zeros(0, h, w, dtype=torch.int64),
                    "label_id": torch.zeros(0, h, w, dtype=torch.int64)}
        return self.render_scenes(self.scenes(attrs, seeds))

    def render_seeded(self, attrs: torch.Tensor, seeds: torch.Tensor) -> dict[str, torch.Tensor]:
        """Render attribute rows ``attrs`` (B, D) in natural units (D = 20, or 30 with the camera); row i depends only
        on (attrs[i], seeds[i]).

        Rows outside the attribute bounds raise ``ValueError`` naming the attribute.

        Returns (on ``attrs.device``):
            ``"image"``: (B, 3, H, W) float32 in [0, 1];
            ``"label"``: (B, H, W) int64 Cityscapes train ids (0..18, 255 = ignore);
            ``"label_id"``: (B, H, W) int64 Cityscapes ids;
            ``"seed"``: (B,) int64 per-image layout seeds.
        """
        out = self._frames(attrs, seeds)
        if self.config.camera and attrs.shape[0]:
            out["image"] = apply_camera(out["image"], attrs[:, len(STREET_ATTRIBUTES):].detach().cpu(), seeds.cpu())
        out["seed"] = seeds.clone().to(torch.int64)
        return {k: v.to(attrs.device) for k, v in out.items()}

    def render_look_parts(self, attrs: torch.Tensor, seeds: torch.Tensor) -> tuple[torch.Tensor, Develop]:
        """The render of ``attrs`` (B, D) with ``seeds`` (B,) split at the camera (the engine contract's optional
        look stage, :mod:`scenefit.engines.base`).

        Returns ``frames`` (B, 3, H, W) float32 in [0, 1], the rasterized frames before the camera, and
        ``develop(look (B, 10), frames) -> images (B, 3, H, W)``: the camera of :func:`~.street_camera.develop_camera`
        with camera rows ``look`` (natural units, in the order of ``space.look``), differentiable in ``look``, equal
        in the forward pass to :meth:`render_seeded`'s images of the same rows and seeds. Without the camera the
        space has no look column: ``look`` is (B, 0) and ``develop`` returns the frames. All on ``attrs.device``.
        """
        frames = self._frames(attrs, seeds)["image"].to(attrs.device)
        noise: list[torch.Tensor] = []  # drawn once, on the first call: develop runs every step of a refinement
        row_seeds = seeds.detach().cpu().clone()

        def develop(look: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
            if look.shape != (frames.shape[0], len(self.space.look)):
                raise ValueError(f"develop needs look rows of shape ({frames.shape[0]}, {len(self.space.look)}), got {tuple(look.shape)}")
            if not self.config.camera:
                return frames
            if not noise:
                noise.append(camera_noise(row_seeds, self.height, self.width))
            return develop_camera(frames, look, noise[0].to(frames.device))

        return frames, develop

    def initial_centre(self) -> torch.Tensor:
        """The initial scene's centre, :data:`INITIAL_SCENE` (and the neutral camera), as one (D,) float32 row."""
        centre = {**INITIAL_SCENE, **NEUTRAL_CAMERA}
        return torch.tensor([centre[name] for name in self.space.names], dtype=torch.float32)

    def sample_initial(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Initial scenes: a plain, average two-lane street, each scene attribute N(default, 5% of span), clamped,
        seen by the neutral camera (the user's prior knows nothing of the target camera; the scene draws are the
        same with and without the camera).

        Returns:
            (n, D) float32 attribute rows in natural units.
        """
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        k = len(STREET_ATTRIBUTES)
        mean = self.initial_centre()
        span = torch.tensor([0.0 if a.categorical else a.span for a in self.space.attributes[:k]], dtype=torch.float32)
        x = mean.repeat(n, 1)
        x[:, :k] = mean[:k] + 0.05 * span * torch.randn(n, k, generator=generator)
        return self.space.clamp(x)

    def describe(self) -> dict:
        """Identity for checkpoint checks: adds the renderer settings (focal length, lighting, fog, layout)."""
        cfg = asdict(self.config)
        cfg.pop("frames_per_pass")  # changes speed, not pixels
        if not cfg["camera"]:
            cfg.pop("camera")  # engines without the camera keep the identity (and model keys) they had before it
        return {**super().describe(), "config": cfg}

    def resized(self, height: int, width: int) -> "StreetEngine":
        """The same street at ``height`` × ``width``, rasterized natively (same scene for the same seed)."""
        if (height, width) == (self.height, self.width):
            return self
        eng = StreetEngine(replace(self.config, height=height, width=width))
        eng.spec = self.spec
        return eng

    # ---------------------------------------------------------------- OpenGL
    def _context(self) -> dict:
        """The GL state of this engine, created on first use: context, program, and (lazily) buffers."""
        if self._gl is None:
            import moderngl  # deferred: importing the package must not need a GL stack

            ctx = moderngl.create_standalone_context(backend="egl")
            with ctx:
                prog = ctx.program(vertex_shader=_VERTEX, fragment_shader=_FRAGMENT)
            self._gl = {"ctx": ctx, "prog": prog, "vbo": None, "vao": None, "fbo": None, "tiles": 0}
        return self._gl

    def _targets(self, gl: dict, frames: int) -> int:
        """Make the one-frame framebuffer and the pixel-pack buffers for ``frames`` frames (grown, never shrunk).

        Every frame is drawn at the same place, the framebuffer's origin, and copied into its slot of the
        pack buffers on the GPU: a frame's pixels never depend on where it falls in a batch (rasterizing at
        another viewport offset moves interpolated values by rounding, and a pixel's colour by one level).
        Returns the number of frames per draw/read pass.
        """
        ctx = gl["ctx"]
        if gl["fbo"] is None:
            size = (self.width, self.height)
            gl["color"] = ctx.renderbuffer(size, components=4)
            gl["label"] = ctx.renderbuffer(size, components=1, dtype="u1")
            gl["depth"] = ctx.depth_renderbuffer(size)
            gl["fbo"] = ctx.framebuffer([gl["color"], gl["label"]], gl["depth"])
        tiles = max(1, min(frames, self.config.frames_per_pass, _PACK_BYTES // (self.height * self.width * 3)))
        if gl["tiles"] < tiles:
            for k in ("rgb_pack", "label_pack"):
                if gl.get(k) is not None:
                    gl[k].release()
            gl["rgb_pack"] = ctx.buffer(reserve=tiles * self.height * self.width * 3)
            gl["label_pack"] = ctx.buffer(reserve=tiles * self.height * self.width)
            gl["tiles"] = tiles
        return gl["tiles"]

    def _upload(self, gl: dict, verts: np.ndarray) -> None:
        data = verts.tobytes()
        if gl["vbo"] is None or gl["vbo"].size < len(data):
            for k in ("vao", "vbo"):
                if gl[k] is not None:
                    gl[k].release()
            gl["vbo"] = gl["ctx"].buffer(reserve=max(len(data), 1 << 20) * 3 // 2)
            gl["vao"] = gl["ctx"].vertex_array(gl["prog"], [(gl["vbo"], "3f 4f1", "in_pos", "in_rgba")])
        gl["vbo"].write(data)

    def render_scenes(self, scenes: Scenes) -> dict[str, torch.Tensor]:
        """Rasterize a prepared batch; returns ``image``, ``label``, ``label_id`` as in :meth:`render` (CPU)."""
        b, h, w = len(scenes), self.height, self.width
        if (scenes.image_height, scenes.image_width) != (h, w):
            raise ValueError(f"scenes were laid out for {scenes.image_height}x{scenes.image_width}, engine renders {h}x{w}")
        image = np.empty((b, 3, h, w), dtype=np.uint8)
        label_id = np.empty((b, h, w), dtype=np.uint8)
        gl = self._context()
        with gl["ctx"]:  # several engines (contexts) may live in one process: make ours current
            self._draw(gl, scenes, image, label_id)
        return {
            "image": torch.from_numpy(image).float().div_(255.0),
            "label": torch.from_numpy(self._train_id_u8[label_id]).long(),
            "label_id": torch.from_numpy(label_id).long(),
        }

    def _draw(self, gl: dict, scenes: Scenes, image: np.ndarray, label_id: np.ndarray) -> None:
        """Draw ``scenes`` chunk by chunk and read them into ``image`` (B, 3, H, W) / ``label_id`` (B, H, W) uint8."""
        b, h, w = len(scenes), self.height, self.width
        ctx, prog, tiles = gl["ctx"], gl["prog"], self._targets(gl, max(b, 1))
        ctx.enable(ctx.DEPTH_TEST)
        ctx.front_face = "ccw"
        prog["u_lit"].value = int(self.config.lighting)
        prog["u_fog_distance"].value = self.config.fog_distance
        fbo = gl["fbo"]
        fbo.use()
        ctx.viewport = (0, 0, w, h)
        for start in range(0, b, tiles):
            chunk = scenes.frames(start, min(start + tiles, b))
            n = len(chunk)
            verts, ranges = scene_triangles(chunk, self.config.layout)
            self._upload(gl, verts)
            for i in range(n):
                cam = chunk.camera(i)
                fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
                prog["u_vp"].write((cam.projection_matrix() @ cam.view_matrix()).T.astype("f4").tobytes())
                prog["u_cam"].value = tuple(cam.position)
                prog["u_sun_dir"].value = tuple(chunk.sun_dir[i])
                prog["u_ambient"].value = 0.5 + 0.3 * (1.0 - chunk.sun_brightness[i])
                prog["u_direct"].value = 0.75 * chunk.sun_brightness[i]
                prog["u_fog_color"].value = tuple(chunk.sky_horizon[i])
                # front to back so that the depth test rejects hidden fragments early
                for k, (first, count) in enumerate(ranges[i].tolist()):
                    if count:
                        if k == 0:
                            ctx.enable(ctx.CULL_FACE)
                        gl["vao"].render(first=first, vertices=count)
                        if k == 0:
                            ctx.disable(ctx.CULL_FACE)
                fbo.read_into(gl["rgb_pack"], viewport=(0, 0, w, h), components=3, attachment=0, write_offset=i * h * w * 3)
                fbo.read_into(gl["label_pack"], viewport=(0, 0, w, h), components=1, attachment=1, dtype="u1",
                              write_offset=i * h * w)
            rgb = np.frombuffer(gl["rgb_pack"].read(size=n * h * w * 3), np.uint8).reshape(n, h, w, 3)
            lab = np.frombuffer(gl["label_pack"].read(size=n * h * w), np.uint8).reshape(n, h, w)
            image[start:start + n] = rgb[:, ::-1].transpose(0, 3, 1, 2)  # GL rows run bottom-up
            label_id[start:start + n] = lab[:, ::-1]

    def close(self) -> None:
        """Release every GL object and the context; the next render creates fresh ones."""
        if self._gl is None:
            return
        gl, self._gl = self._gl, None
        with gl["ctx"]:
            for k in ("vao", "vbo", "fbo", "color", "label", "depth", "rgb_pack", "label_pack", "prog"):
                if gl.get(k) is not None:
                    gl[k].release()
        gl["ctx"].release()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_gl"] = None  # GL handles belong to one process
        return state
