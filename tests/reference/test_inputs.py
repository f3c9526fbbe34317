"""Bad input through the file loaders: each case names the file and the fix."""

import json
import logging
import os
import re
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from reference.inputs import (
    BODY25_TO_18,
    InputError,
    crop_to,
    load_image,
    load_inputs,
    load_keypoints,
    load_mask,
    load_parsing,
    pad_to_multiple,
    save_png,
)

H, W = 24, 40
SIZE = (H, W)


def write(path, array, mode=None, **save):
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    image.save(path, **save)
    return path


def write_png16(path, array):
    """A 16-bit PNG with 1..4 channels (Pillow writes only 16-bit grayscale itself)."""
    height, width, channels = array.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return path


def person_mask():
    mask = np.zeros(SIZE, np.uint8)
    mask[4:12, 5:15] = 255
    return mask


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng()
    image = write(tmp_path / "photo.png", rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    return tmp_path, image, write(tmp_path / "m1.png", person_mask())


def message(excinfo) -> str:
    return str(excinfo.value)


# ---- images -----------------------------------------------------------------------------------


def test_loads_image_and_masks(files):
    tmp, image, mask = files
    other = np.zeros(SIZE, np.uint8)
    other[14:20, 20:30] = 255
    inputs = load_inputs(image, [mask, str(write(tmp / "m2.png", other))], prompt="street")
    assert inputs.image.shape == (3, H, W) and inputs.masks.shape == (2, H, W)
    assert inputs.masks.sum().item() == 8 * 10 + 6 * 10 and inputs.original_size == SIZE
    assert inputs.image.min() >= 0 and inputs.image.max() <= 1 and inputs.prompt == "street"
    assert inputs.keypoints is None and inputs.parsing is None
    expected = torch.from_numpy(np.array(Image.open(image))).permute(2, 0, 1) / 255
    assert torch.equal(inputs.image, expected)


def test_rgba_image_drops_alpha_with_a_notice(tmp_path, caplog):
    rgba = np.random.default_rng().integers(0, 256, (8, 8, 4), dtype=np.uint8)
    path = write(tmp_path / "rgba.png", rgba)
    with caplog.at_level(logging.INFO, logger="mild"):
        image = load_image(path)
    assert "rgba.png has an alpha channel: it is dropped" in caplog.text
    assert torch.equal(image, torch.from_numpy(rgba[..., :3]).permute(2, 0, 1) / 255)


def test_grayscale_palette_and_bilevel_images(tmp_path):
    gray = write(tmp_path / "gray.png", np.full((8, 8), 51, np.uint8))
    torch.testing.assert_close(load_image(gray), torch.full((3, 8, 8), 0.2))
    colours = np.random.default_rng().integers(0, 256, (8, 8, 3), dtype=np.uint8)
    palette = Image.fromarray(colours).quantize(16)
    palette.save(tmp_path / "palette.png")
    expected = torch.from_numpy(np.array(palette.convert("RGB"))).permute(2, 0, 1) / 255
    assert torch.equal(load_image(tmp_path / "palette.png"), expected)
    bilevel = write(tmp_path / "bw.png", person_mask(), "1")
    assert torch.equal(load_image(bilevel), torch.from_numpy(person_mask() / 255).float().expand(3, H, W))


def test_16_bit_images_are_scaled_by_65535(tmp_path):
    value = 65535 // 4
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), value, np.uint16)).save(deep)
    torch.testing.assert_close(load_image(deep), torch.full((3, 8, 8), value / 65535), atol=1e-6, rtol=0)
    dark = tmp_path / "dark.png"  # every value <= 255 must still be 16-bit data, not 8-bit
    Image.fromarray(np.full((8, 8), 200, np.uint16)).save(dark)
    torch.testing.assert_close(load_image(dark), torch.full((3, 8, 8), 200 / 65535), atol=1e-6, rtol=0)
    # Pillow keeps the high byte of 16-bit colour: right scale, 8-bit precision (within 1/255).
    rgb = np.random.default_rng().integers(0, 65536, (6, 5, 3)).astype(np.uint16)
    rgb[0, 0] = (0, 65535, 32768)
    image = load_image(write_png16(tmp_path / "rgb16.png", rgb))
    torch.testing.assert_close(
        image, torch.from_numpy(rgb / 65535).permute(2, 0, 1).float(), atol=1 / 255, rtol=0
    )
    assert torch.equal(image[:, 0, 0], torch.tensor([0, 255, 128]) / 255)


def test_exif_rotation_is_applied_and_a_mask_without_it_is_told_why_it_does_not_fit(files, caplog):
    tmp, _, mask = files
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to display
    array = np.random.default_rng().integers(0, 256, (H, W, 3), dtype=np.uint8)
    path = write(tmp / "phone.png", array, exif=exif)
    with caplog.at_level(logging.INFO, logger="mild"):
        image = load_image(path)
    assert (
        image.shape == (3, W, H) and "phone.png: turned upright as its EXIF orientation says" in caplog.text
    )
    with pytest.raises(InputError) as excinfo:
        load_inputs(path, [mask])
    assert "m1.png is 40x24 but the image is 24x40 (the sides are swapped" in message(excinfo)


def test_missing_unreadable_and_folder_paths(tmp_path):
    with pytest.raises(InputError, match=r"nope.png does not exist: check the path"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(InputError, match=r"bad.png is not a readable image .*save it as PNG or JPEG"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(InputError, match=rf"{re.escape(str(tmp_path))} is a folder: pass the file itself"):
        load_mask(tmp_path, SIZE)


# ---- masks ------------------------------------------------------------------------------------


def test_mask_of_another_size(files):
    tmp, image, _ = files
    small = write(tmp / "small.png", np.full((10, 12), 255, np.uint8))
    with pytest.raises(InputError) as excinfo:
        load_inputs(image, [small])
    assert re.search(
        r"mask .*small.png is 12x10 but the image is 40x24: resize the mask to the image size \(nearest",
        message(excinfo),
    )


def test_empty_mask(files):
    tmp, image, _ = files
    empty = write(tmp / "empty.png", np.zeros(SIZE, np.uint8))
    with pytest.raises(InputError, match=r"mask .*empty.png is empty .*draw the person in white on black"):
        load_inputs(image, [empty])
    faint = write(tmp / "faint.png", np.full(SIZE, 100, np.uint8))  # nothing reaches 0.5
    with pytest.raises(InputError, match=r"faint.png is empty"):
        load_mask(faint, SIZE)


def test_a_mask_given_twice_is_refused(files):
    """Two layers of one person: Eq. 6 would add that person twice where both are kept."""
    tmp, image, mask = files
    with pytest.raises(InputError) as excinfo:
        load_inputs(image, [mask, str(mask)])
    assert message(excinfo) == f"mask {mask} (--mask 2) is given twice (--mask 1): give one mask per person"
    copy = write(tmp / "copy.png", person_mask() // 255 * 200)  # another file, the same mask at 0.5
    with pytest.raises(InputError) as excinfo:
        load_inputs(image, [mask, write(tmp / "m3.png", np.flipud(person_mask())), copy])
    assert (
        message(excinfo)
        == f"mask {copy} (--mask 3) is the same as {mask} (--mask 1): give one mask per person"
    )


def test_no_masks(files):
    _, image, _ = files
    with pytest.raises(InputError, match="no masks given: pass one --mask per person"):
        load_inputs(image, [])


def test_non_binary_mask_is_binarised_with_a_notice(files, caplog):
    tmp, image, _ = files
    soft = np.zeros(SIZE, np.uint8)
    soft[0:5, 0:5], soft[10:15, 10:15], soft[20:22, 30:33] = 100, 200, 128
    path = write(tmp / "soft.png", soft)
    with caplog.at_level(logging.INFO, logger="mild"):
        inputs = load_inputs(image, [path])
    assert "soft.png is not binary: binarised at 0.5" in caplog.text
    assert inputs.masks.sum().item() == 25 + 6 and set(inputs.masks.unique().tolist()) == {0.0, 1.0}


def coloured(kind, tmp):
    """The person of `person_mask` written in several ways a user may have made a mask."""
    person = person_mask() > 0
    if kind == "zero-one":
        return write(tmp / "zero_one.png", person.astype(np.uint8))
    if kind == "bilevel":
        return write(tmp / "bilevel.png", person_mask(), "1")
    if kind == "red-on-black":
        rgb = np.zeros((H, W, 3), np.uint8)
        rgb[person] = (255, 0, 0)
        return write(tmp / "red.png", rgb)
    if kind == "white-on-transparent":
        rgba = np.full((H, W, 4), 255, np.uint8)
        rgba[..., 3] = person * 255
        return write(tmp / "transparent.png", rgba)
    if kind == "16-bit":
        return write(tmp / "deep.png", person.astype(np.uint16) * 65535)
    return write(tmp / "palette.png", person_mask(), "P")


@pytest.mark.parametrize(
    "kind", ["zero-one", "bilevel", "red-on-black", "white-on-transparent", "16-bit", "palette"]
)
def test_mask_files_of_any_mode_give_the_same_mask(tmp_path, kind):
    mask = load_mask(coloured(kind, tmp_path), SIZE)
    assert mask.dtype == torch.float32 and torch.equal(mask, torch.from_numpy(person_mask() / 255).float())


# ---- parsing ----------------------------------------------------------------------------------


def test_parsing_label_maps(tmp_path):
    labels = np.random.default_rng().integers(0, 20, SIZE).astype(np.uint8)
    plain = load_parsing(write(tmp_path / "labels.png", labels), SIZE)
    assert plain.dtype == torch.int64 and torch.equal(plain, torch.from_numpy(labels).long())
    palette = Image.fromarray(labels, "L").convert("P")  # SCHP writes ids as palette indices
    palette.putpalette(np.random.default_rng().integers(0, 256, 768).astype(np.uint8).tobytes())
    palette.save(tmp_path / "schp.png")
    assert torch.equal(load_parsing(tmp_path / "schp.png", SIZE), plain)


def test_bad_parsing_maps(tmp_path):
    labels = np.zeros(SIZE, np.uint8)
    labels[3, 3] = 25
    with pytest.raises(InputError, match=r"parsing map .*big.png has label 25: LIP label ids are 0..19"):
        load_parsing(write(tmp_path / "big.png", labels), SIZE)
    rgb = write(tmp_path / "vis.png", np.zeros((H, W, 3), np.uint8))
    with pytest.raises(InputError, match=r"vis.png is a RGB image: .*single-channel \(L or P\) PNG"):
        load_parsing(rgb, SIZE)
    small = write(tmp_path / "small.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(InputError, match=r"small.png is 8x8 but the image is 40x24: resize the parsing map"):
        load_parsing(small, SIZE)


# ---- pose -------------------------------------------------------------------------------------


def pose_file(tmp_path, people, **extra):
    path = tmp_path / "pose.json"
    path.write_text(json.dumps({"version": 1.3, "people": people, **extra}))
    return path


def random_person(n_points=18, width=W, height=H):
    rng = np.random.default_rng()
    points = np.stack(
        [rng.uniform(0, width, n_points), rng.uniform(0, height, n_points), rng.uniform(0.1, 1, n_points)], 1
    )
    points[3] = 0  # one missing keypoint
    return points


def test_pose_json_people_in_mask_order(tmp_path):
    people = [random_person(), random_person()]
    path = pose_file(tmp_path, [{"pose_keypoints_2d": p.ravel().tolist()} for p in people])
    points = load_keypoints(path, 2, SIZE)
    assert points.shape == (2, 18, 3) and points.dtype == torch.float32
    torch.testing.assert_close(points, torch.from_numpy(np.stack(people)).float())


def test_body25_is_reduced_to_openpose18(tmp_path, caplog):
    person = random_person(25)
    path = pose_file(tmp_path, [{"pose_keypoints_2d": person.ravel().tolist()}])
    with caplog.at_level(logging.INFO, logger="mild"):
        points = load_keypoints(path, 1, SIZE)
    assert "person 1 is BODY_25" in caplog.text
    torch.testing.assert_close(points[0], torch.from_numpy(person[list(BODY25_TO_18)]).float())
    assert torch.equal(points[0, 8], torch.from_numpy(person[9]).float())  # right hip follows the neck's arm


def test_pose_canvas_of_another_size_is_scaled(tmp_path):
    person = random_person(width=2 * W, height=2 * H)
    path = pose_file(
        tmp_path, [{"pose_keypoints_2d": person.ravel().tolist()}], canvas_width=2 * W, canvas_height=2 * H
    )
    expected = torch.from_numpy(person * (0.5, 0.5, 1)).float()
    torch.testing.assert_close(load_keypoints(path, 1, SIZE)[0], expected)


def test_bad_pose_files(tmp_path):
    person = {"pose_keypoints_2d": random_person().ravel().tolist()}
    path = pose_file(tmp_path, [person, person])
    with pytest.raises(
        InputError, match=r"pose.json lists 2 people but there are 3 masks: give one person per mask"
    ):
        load_keypoints(path, 3, SIZE)
    with pytest.raises(InputError, match=r"pose.json lists 2 people but there is 1 mask"):
        load_keypoints(path, 1, SIZE)
    with pytest.raises(InputError, match=r"pose.json lists 1 person but there are 2 masks"):
        load_keypoints(pose_file(tmp_path, [person]), 2, SIZE)
    path = pose_file(tmp_path, [person, {"pose_keypoints_2d": [0] * 30}])
    with pytest.raises(
        InputError, match=r"pose.json: person 2 has 30 numbers, expected the OpenPose-18 layout"
    ):
        load_keypoints(path, 2, SIZE)
    path.write_text("{}")
    with pytest.raises(InputError, match=r"pose.json is not OpenPose JSON \(KeyError.*expected \{\"people\""):
        load_keypoints(path, 1, SIZE)
    path.write_text("{'people': []")
    with pytest.raises(InputError, match=r"pose.json is not OpenPose JSON \(JSONDecodeError"):
        load_keypoints(path, 1, SIZE)
    path.write_text('{"people": [{"pose_keypoints_2d": [NaN' + ", 0" * 53 + "]}]}")
    with pytest.raises(InputError, match=r"pose.json has NaN or infinite numbers: write 0 0 0 for a missing"):
        load_keypoints(path, 1, SIZE)
    with pytest.raises(InputError, match=r"nope.json does not exist: check the path"):
        load_keypoints(tmp_path / "nope.json", 1, SIZE)


def test_pose_of_another_image_is_refused_with_the_fix(files):
    tmp, image, mask = files
    far = random_person()
    far[5] = (W + 30, 2, 0.9)
    far[6] = (W + 30, 2, 0)  # a missing point may lie anywhere
    path = pose_file(tmp, [{"pose_keypoints_2d": far.ravel().tolist()}])
    with pytest.raises(InputError) as excinfo:
        load_inputs(image, [mask], pose=path)
    assert "pose.json: person 1, keypoint 5 at (70, 2) lies outside the 40x24 image" in message(excinfo)
    assert "run the pose detector on it" in message(excinfo)
    assert load_keypoints(path, 1).shape == (1, 18, 3)  # without a size nothing is checked


# ---- padding and writing ----------------------------------------------------------------------


def test_padding_to_8_and_back():
    image = torch.rand(3, 21, 30)
    padded, size = pad_to_multiple(image)
    assert padded.shape == (3, 24, 32) and size == (21, 30)
    assert torch.equal(padded[:, 23, 31], image[:, 20, 29]) and torch.equal(padded[:, 22, 3], image[:, 20, 3])
    mask, _ = pad_to_multiple(torch.ones(2, 21, 30), edge=False)
    assert mask[:, 21:].sum() == 0 and mask[:, :, 30:].sum() == 0  # padding never adds a person
    labels = torch.randint(0, 20, (21, 30))
    for edge in (True, False):
        padded_labels, _ = pad_to_multiple(labels, edge=edge)
        assert padded_labels.dtype == torch.int64 and torch.equal(crop_to(padded_labels, size), labels)
    batch, _ = pad_to_multiple(torch.rand(2, 3, 21, 30), multiple=16)
    assert batch.shape == (2, 3, 32, 32) and torch.equal(batch[1, :, 31, 31], batch[1, :, 20, 29])
    assert torch.equal(crop_to(padded, size), image)


def test_padding_edge_cases():
    image = torch.rand(3, 16, 8)
    same, size = pad_to_multiple(image)
    assert same is image and size == (16, 8)
    with pytest.raises(ValueError, match="multiple must be >= 1, got 0"):
        pad_to_multiple(image, 0)
    with pytest.raises(ValueError, match=r"cannot crop \(16, 8\) to the larger \(17, 8\)"):
        crop_to(image, (17, 8))


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_save_png_round_trip(tmp_path, channels):
    image = torch.rand(channels, 6, 7)
    path = save_png(tmp_path / "x.png", image)
    back = np.asarray(Image.open(path))
    assert back.shape == ((6, 7) if channels == 1 else (6, 7, channels))
    expected = image[0].numpy() if channels == 1 else image.permute(1, 2, 0).numpy()
    assert np.abs(back / 255.0 - expected).max() <= 0.5 / 255 + 1e-6
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_save_png_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_png(tmp_path / "x.png", torch.rand(3, 4, 4))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_save_png_never_leaves_half_a_file(tmp_path, monkeypatch):
    path = save_png(tmp_path / "x.png", torch.zeros(3, 4, 4))
    before = path.read_bytes()

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_png(path, torch.ones(3, 4, 4))
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_save_png_refuses_bad_tensors(tmp_path):
    with pytest.raises(ValueError, match=r"save_png .*x.png: expected \[1, 3 or 4, H, W\]"):
        save_png(tmp_path / "x.png", torch.rand(2, 4, 4))
    bad = torch.rand(3, 4, 4)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite values; nothing was written"):
        save_png(tmp_path / "x.png", bad)
    assert list(tmp_path.iterdir()) == []
