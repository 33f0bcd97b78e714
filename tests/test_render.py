import numpy as np
import pytest

from uva_plan.envs.render import render_scenes

BLACK = np.array([[0, 0, 0]])


def _render(polygons, n_vertices, discs, size=64, colors=None):
    polygons = np.asarray(polygons, dtype=np.float64)
    discs = np.asarray(discs, dtype=np.float64)
    colors = BLACK.repeat(polygons.shape[1], 0) if colors is None else colors
    return render_scenes(polygons, n_vertices, colors, discs, BLACK.repeat(discs.shape[1], 0),
                         height=size, width=size)


def test_pixel_aligned_square_is_exact():
    square = [[[[0, 0], [256, 0], [256, 256], [0, 256]]]]
    frame = _render(square, [4], np.zeros((1, 0, 3)))[0]
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    assert (frame[:32, :32] == 0).all() and (frame[32:, :] == 255).all() and (frame[:, 32:] == 255).all()


def test_antialiased_area_matches_geometry():
    # A rotated square and a disc: the darkened mass equals their areas in pixels (to 1%).
    c, s = np.cos(0.3), np.sin(0.3)
    corners = np.array([[-100, -100], [100, -100], [100, 100], [-100, 100]]) @ np.array([[c, s], [-s, c]])
    frame = _render([[corners + 200]], [4], np.zeros((1, 0, 3)))[0]
    dark = (255 - frame[..., 0].astype(float)).sum() / 255
    assert dark == pytest.approx((200 * 64 / 512) ** 2, rel=0.01)
    frame = _render(np.zeros((1, 0, 4, 2)), np.zeros(0), [[[300, 250, 60]]], size=96)[0]
    dark = (255 - frame[..., 0].astype(float)).sum() / 255
    assert dark == pytest.approx(np.pi * (60 * 96 / 512) ** 2, rel=0.01)
    edge = frame[..., 0][(frame[..., 0] > 0) & (frame[..., 0] < 255)]
    assert edge.size > 0, "edges must be anti-aliased (intermediate intensities)"


def test_nonconvex_polygon_and_batch():
    # An L shape (concave): its notch stays background.
    ell = [[0, 0], [256, 0], [256, 128], [128, 128], [128, 256], [0, 256]]
    polys = np.array([[ell], [ell]], dtype=np.float64)
    polys[1, 0] += 256  # second scene: shifted, partly off-screen (clipped, no error)
    frames = _render(polys, [6], np.zeros((2, 0, 3)))
    assert frames.shape == (2, 64, 64, 3)
    assert (frames[0, :16, :32] == 0).all() and (frames[0, 16:32, 16:32] == 255).all()
    assert (frames[1, 32:48, 32:64] == 0).all() and (frames[1, :32] == 255).all()


def test_painter_order_and_colors():
    square = [[[[0, 0], [512, 0], [512, 512], [0, 512]]]]
    frame = render_scenes(np.array(square, float), [4], np.array([[255, 0, 0]]),
                          np.array([[[256, 256, 100]]], float), np.array([[0, 0, 255]]),
                          height=32, width=32)[0]
    assert tuple(frame[16, 16]) == (0, 0, 255) and tuple(frame[0, 0]) == (255, 0, 0)


@pytest.mark.parametrize("kwargs, match", [
    ({"polygons": np.zeros((1, 1, 4))}, "polygons"),
    ({"n_vertices": np.array([2])}, "n_vertices"),
    ({"height": 0}, "height"),
    ({"supersample": 0}, "supersample"),
    ({"polygons": np.full((1, 1, 4, 2), np.nan)}, "finite"),
])
def test_bad_input_is_named(kwargs, match):
    args = dict(polygons=np.zeros((1, 1, 4, 2)), n_vertices=np.array([4]), poly_colors=BLACK,
                discs=np.zeros((1, 0, 3)), disc_colors=np.zeros((0, 3)), height=8, width=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        render_scenes(args.pop("polygons"), args.pop("n_vertices"), args.pop("poly_colors"),
                      args.pop("discs"), args.pop("disc_colors"), **args)
