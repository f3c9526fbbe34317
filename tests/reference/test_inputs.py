"""Bad input through the file loaders: each case names the file and the fix."""

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from reference.inputs import (
    InputError,
    crop_to,
    load_image,
    load_inputs,
    load_keypoints,
    pad_to_multiple,
    save_png,
)


def write(path, array, mode=None):
    Image.fromarray(array, mode).save(path)
    return path


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    image = write(tmp_path / "photo.png", rng.integers(0, 256, (24, 40, 3), dtype=np.uint8))
    mask = np.zeros((24, 40), np.uint8)
    mask[4:12, 5:15] = 255
    return tmp_path, image, write(tmp_path / "m1.png", mask)


def test_loads_image_and_masks(files):
    _, image, mask = files
    inputs = load_inputs(image, [mask, mask], prompt="street")
    assert inputs.image.shape == (3, 24, 40) and inputs.masks.shape == (2, 24, 40)
    assert inputs.masks.sum().item() == 2 * 8 * 10 and inputs.original_size == (24, 40)
    assert inputs.image.min() >= 0 and inputs.image.max() <= 1 and inputs.prompt == "street"


def test_mask_of_another_size(files):
    tmp, image, _ = files
    small = write(tmp / "small.png", np.full((10, 10), 255, np.uint8))
    with pytest.raises(
        InputError, match=r"mask .*small.png is 10x10 but the image is 40x24: resize the mask"
    ):
        load_inputs(image, [small])


def test_empty_mask(files):
    tmp, image, _ = files
    empty = write(tmp / "empty.png", np.zeros((24, 40), np.uint8))
    with pytest.raises(InputError, match=r"mask .*empty.png is empty .*draw the person in white on black"):
        load_inputs(image, [empty])


def test_no_masks(files):
    _, image, _ = files
    with pytest.raises(InputError, match="no masks given: pass one --mask per person"):
        load_inputs(image, [])


def test_non_binary_mask_is_binarised_with_a_notice(files, caplog):
    tmp, image, _ = files
    soft = np.zeros((24, 40), np.uint8)
    soft[0:5, 0:5], soft[10:15, 10:15] = 100, 200
    path = write(tmp / "soft.png", soft)
    with caplog.at_level(logging.INFO, logger="mild"):
        inputs = load_inputs(image, [path])
    assert "soft.png is not binary: binarised at 0.5" in caplog.text
    assert inputs.masks.sum().item() == 25 and set(inputs.masks.unique().tolist()) == {0.0, 1.0}


def test_rgba_grayscale_and_16_bit_images(tmp_path, caplog):
    rgba = write(tmp_path / "rgba.png", np.full((8, 8, 4), 128, np.uint8), "RGBA")
    with caplog.at_level(logging.INFO, logger="mild"):
        assert load_image(rgba).shape == (3, 8, 8)
    assert "alpha channel" in caplog.text
    gray = write(tmp_path / "gray.png", np.full((8, 8), 51, np.uint8))
    torch.testing.assert_close(load_image(gray), torch.full((3, 8, 8), 0.2))
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 65535 // 4, np.uint16)).save(deep)
    torch.testing.assert_close(
        load_image(deep), torch.full((3, 8, 8), (65535 // 4) / 65535), atol=1e-6, rtol=0
    )


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(InputError, match=r"nope.png does not exist: check the path"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(InputError, match=r"bad.png is not a readable image .*save it as PNG or JPEG"):
        load_image(tmp_path / "bad.png")


def test_pose_json(tmp_path):
    person = {"pose_keypoints_2d": list(range(54))}
    path = tmp_path / "pose.json"
    path.write_text(json.dumps({"people": [person, person]}))
    points = load_keypoints(path, 2)
    assert points.shape == (2, 18, 3) and points[1, 17, 2] == 53
    with pytest.raises(InputError, match="has 2 people but there are 3 masks: give one person per mask"):
        load_keypoints(path, 3)
    path.write_text(json.dumps({"people": [{"pose_keypoints_2d": [0] * 30}]}))
    with pytest.raises(InputError, match="person 1 has 10 keypoints, expected the OpenPose-18 layout"):
        load_keypoints(path, 1)
    path.write_text("{}")
    with pytest.raises(InputError, match="is not OpenPose JSON"):
        load_keypoints(path, 1)


def test_padding_to_8_and_back():
    image = torch.rand(3, 21, 30)
    padded, size = pad_to_multiple(image)
    assert padded.shape == (3, 24, 32) and size == (21, 30)
    assert torch.equal(padded[:, 23, 31], image[:, 20, 29])  # edges repeat
    mask, _ = pad_to_multiple(torch.ones(2, 21, 30), edge=False)
    assert mask[:, 21:].sum() == 0 and mask[:, :, 30:].sum() == 0  # masks pad with zeros
    assert torch.equal(crop_to(padded, size), image)


def test_save_png_round_trip(tmp_path):
    rgba = torch.rand(4, 6, 7)
    path = save_png(tmp_path / "x.png", rgba)
    back = np.asarray(Image.open(path))
    assert back.shape == (6, 7, 4)
    assert np.abs(back / 255.0 - rgba.permute(1, 2, 0).numpy()).max() <= 0.5 / 255 + 1e-6
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]
