"""bench/sass_tile_loop.py counts a wgmma kernel's instructions a key tile from cuobjdump's SASS
(plugins/sma/README.md quotes its figures): tested on a listing shaped like cuobjdump's."""

from __future__ import annotations

import pytest

WGMMA = "_ZN4mild3sma6detail15smaForwardWgmmaI"
LAUNCHER = WGMMA + "6__halfNS1_11WgmmaConfigILi2ELi64ELb1ELi2ELNS1_6BiasByE0ELb0ELb0EEEEEvNS0_6ParamsE"
BIAS_STEP = (
    WGMMA + "13__nv_bfloat16NS1_11WgmmaConfigILi2ELi128ELb0ELi1ELNS1_6BiasByE2ELb1ELb1EEEEEvNS0_6ParamsE"
)
MMA_SYNC = (
    "_ZN4mild3sma6detail13smaForwardMmaI6__halfNS1_9MmaConfigILi64ELi64ELi2ELi4ELi2ELb0ELb0EEEEEvNS0_6ParamsE"
)


@pytest.fixture(scope="module")
def sass_tile_loop(bench_script):
    return bench_script("sass_tile_loop")


def listing(name: str, body: list[str]) -> str:
    """A function as cuobjdump -sass prints it: `/*address*/ instruction ;` at 16-byte steps."""
    lines = [f"\t\tFunction : {name}"]
    lines += [f"        /*{16 * i:04x}*/        {text} ;  /* 0x0 */" for i, text in enumerate(body)]
    return "\n".join(lines) + "\n"


def kernel(hgmma_a_trip: int, ffma_a_trip: int) -> list[str]:
    """A prologue, a main loop from 0x20 (its HGMMA and FFMA, an inner loop without HGMMA, a
    predicated branch out), an epilogue."""
    body = ["MOV R1, c[0x0][0x28]", "S2R R0, SR_TID.X"]
    body += ["HGMMA.64x64x16.F32 R24, gdesc[UR4], R24, gsb0"] * hgmma_a_trip
    body += ["FFMA R3, R4, R5, R6"] * ffma_a_trip
    inner = len(body)
    body += ["IADD3 R7, R7, 0x1, RZ", f"@P0 BRA 0x{16 * inner:x}"]  # a short loop of its own
    body += ["@P1 BRA 0x9990", "BRA 0x20", "EXIT"]
    return body


def test_instructions_a_tile_of_each_wgmma_kernel(sass_tile_loop):
    sass = (
        listing(LAUNCHER, kernel(16, 132))
        + listing(MMA_SYNC, ["HMMA.16816.F32 R4, R8, R12, R4", "BRA 0x0"])
        + listing(BIAS_STEP, kernel(26, 10))
    )
    launcher, bias_step = sass_tile_loop.tile_loops(sass)
    # the loop: 16 HGMMA + 132 FFMA + the inner loop's 2 + 2 branches; 8 HGMMA a 64-key tile
    assert sum(launcher.loop.values()) == 152
    assert launcher.tiles == 2
    assert launcher.per_tile == 76
    assert launcher.loop["FFMA"] == 132 and launcher.loop["HGMMA"] == 16
    assert launcher.kernel == "fp16 <2, 64, overlap, 2 CTAs>, bias by ffma"
    assert launcher.instructions == 155
    # 128-key tiles with the bias step: 4 + 8 + 1 = 13 HGMMA a tile
    assert bias_step.tiles == 2
    assert bias_step.kernel == "bf16 <2, 128, in turns, 1 CTAs>, bias by wgmma, sums by mma.sync, lazy max"
    row = "| fp16 <2, 64, overlap, 2 CTAs>, bias by ffma | 155 | 152 | 2 | **76** | FFMA 66,"
    assert launcher.row().startswith(row)


def test_kernel_filter_and_no_loop(sass_tile_loop):
    unlooped = ["HGMMA.64x128x16.F32 R24, gdesc[UR4], RZ", "EXIT"]  # its HGMMA is in no loop
    sass = listing(LAUNCHER, kernel(16, 4)) + listing(BIAS_STEP, unlooped)
    assert sass_tile_loop.tile_loops(sass, "bfloat16") == []
    assert len(sass_tile_loop.tile_loops(sass, "6__half")) == 1


def test_bad_input_names_the_fix(sass_tile_loop, tmp_path, capsys):
    assert sass_tile_loop.main([str(tmp_path / "missing.cubin")]) == 2
    assert "missing.cubin is not a file: build it with nvcc -cubin" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["@P0 BRA 0x40", "@!UP1 BRA 0x40", "BRA 0x40"])
def test_predicates_do_not_hide_the_opcode(sass_tile_loop, text):
    assert sass_tile_loop.opcode(text) == "BRA"
