"""Draw docs/img/geometry.png: the dcmxr coordinate convention on a tilted stack.

    python docs/img/make_geometry_png.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent

# a small axial-ish stack, 4 x 3 voxels per slice, 4 slices, gantry tilt 20 degrees
NX, NY, NZ = 4, 3, 4
SX, SY, SZ = 1.0, 1.0, 1.6
TILT = np.deg2rad(20.0)
DIR_X = np.array([1.0, 0.0, 0.0])  # along a row (IOP[:3])
DIR_Y = np.array([0.0, 1.0, 0.0])  # down a column (IOP[3:])
DIR_Z = np.array([0.0, np.sin(TILT), np.cos(TILT)])  # the true stacking direction: tilted, not the normal
X = 2.0 + SX * np.arange(NX)  # coordinate values, mm along each direction
Y = -1.0 + SY * np.arange(NY)
Z = 0.5 + SZ * np.arange(NZ)


def world(x, y, z):
    return np.multiply.outer(x, DIR_X) + np.multiply.outer(y, DIR_Y) + np.multiply.outer(z, DIR_Z)


def main() -> None:
    fig = plt.figure(figsize=(11, 5.2))
    ax = fig.add_subplot(1, 2, 1, projection="3d")
    # slices: voxel-edge outlines and voxel centres
    for k, z in enumerate(Z):
        xe = [X[0] - SX / 2, X[-1] + SX / 2]
        ye = [Y[0] - SY / 2, Y[-1] + SY / 2]
        c = np.array([world(xe[0], ye[0], z), world(xe[1], ye[0], z), world(xe[1], ye[1], z),
                      world(xe[0], ye[1], z), world(xe[0], ye[0], z)])
        ax.plot(c[:, 0], c[:, 1], c[:, 2], color="0.55", lw=1)
        gx, gy = np.meshgrid(X, Y, indexing="ij")
        p = world(gx.ravel(), gy.ravel(), np.full(gx.size, z))
        ax.scatter(p[:, 0], p[:, 1], p[:, 2], s=10, color="tab:blue" if k else "tab:red", depthshade=False)
    o = world(X[0], Y[0], Z[0])
    for d, name, col in ((DIR_X, "x: direction = IOP[:3]", "tab:red"),
                         (DIR_Y, "y: direction = IOP[3:]", "tab:green"),
                         (DIR_Z, "z: stacking direction (tilted)", "tab:blue")):
        ax.quiver(*o, *(2.2 * d), color=col, lw=2, arrow_length_ratio=0.15)
        ax.text(*(o + 2.5 * d), name.split(":")[0], color=col, fontsize=12, weight="bold")
    n = np.cross(DIR_X, DIR_Y)
    ax.quiver(*o, *(2.2 * n), color="0.3", lw=1, ls="--", arrow_length_ratio=0.1)
    ax.text(*(o + 2.4 * n + np.array([-2.6, 0, 0.3])), "slice normal", color="0.3", fontsize=9)
    ax.text(*(o + np.array([0.2, -0.8, -0.6])), "first voxel centre\n(x[0], y[0], z[0])", color="tab:red", fontsize=8)
    ax.set_xlabel("L (patient left) mm")
    ax.set_ylabel("P (posterior) mm")
    ax.set_zlabel("S (superior) mm")
    ax.set_title("Patient frame (LPS): each dim coordinate holds\nvoxel-centre positions along its own direction")
    ax.view_init(elev=18, azim=-62)
    ax.set_box_aspect((1, 1, 1.1))

    # side view: the y-z plane of patient space (P vs S), showing what the z values measure
    bx = fig.add_subplot(1, 2, 2)
    for k, z in enumerate(Z):
        ends = world(np.array([X[0], X[0]]), np.array([Y[0] - SY / 2, Y[-1] + SY / 2]), np.array([z, z]))
        bx.plot(ends[:, 1], ends[:, 2], color="0.55", lw=3, solid_capstyle="butt")
        c = world(np.full(NY, X[0]), Y, np.full(NY, z))
        bx.scatter(c[:, 1], c[:, 2], s=18, color="tab:blue", zorder=3)
        bx.annotate(f"z[{k}] = {z:.1f} mm", xy=(ends[-1, 1], ends[-1, 2]), xytext=(6, -3),
                    textcoords="offset points", fontsize=8, color="tab:blue")
    o2 = world(X[0], Y[0], 0.0)
    p_last = world(X[0], Y[0], Z[-1])
    bx.annotate("", xy=(p_last[1], p_last[2]), xytext=(o2[1], o2[2]),
                arrowprops=dict(arrowstyle="->", color="tab:blue", lw=1.5))
    bx.plot([o2[1]], [o2[2]], "k+", ms=10)
    bx.text(o2[1] - 0.1, o2[2] - 0.45, "z = 0", fontsize=8, ha="right")
    mid = 0.5 * (o2 + p_last)
    bx.text(mid[1] - 0.15, mid[2], "dir_z (tilted)", color="tab:blue", fontsize=9, ha="right")
    bx.annotate("", xy=(o2[1] + 1.2, o2[2]), xytext=(o2[1], o2[2]),
                arrowprops=dict(arrowstyle="->", color="tab:green", lw=1.5))
    bx.text(o2[1] + 0.4, o2[2] - 0.45, "dir_y", color="tab:green", fontsize=9)
    bx.plot([o2[1], o2[1]], [o2[2], p_last[2]], color="0.3", ls="--", lw=1)
    bx.text(o2[1] - 0.1, o2[2] + 4.0, "slice\nnormal", color="0.3", fontsize=8, ha="right")
    bx.set_xlim(-2.6, 4.6)
    bx.set_ylim(-0.9, 5.8)
    bx.set_xlabel("P (posterior) mm")
    bx.set_ylabel("S (superior) mm")
    bx.set_aspect("equal")
    bx.grid(alpha=0.3)
    bx.set_title("Side view of the tilted stack: position =\nx*dir_x + y*dir_y + z*dir_z (no resampling)")
    fig.text(0.5, 0.01, "da.z.attrs = {'units': 'mm', 'direction': dir_z}; likewise x and y. "
             "affine columns = step * direction; affine[:3, 3] = position of voxel (0, 0, 0).",
             ha="center", fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(HERE / "geometry.png", dpi=110)


if __name__ == "__main__":
    main()
