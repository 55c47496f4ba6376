"""Frame samplers against hand-computed indices and the reference formulations."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.data.sampling import dense_test_indices, sample_test_indices, uniform_test_indices


def test_dense_single_clip_is_centred():
    # span (4-1)*2+1 = 7, max_offset 93, offset 93 // 2 = 46
    assert dense_test_indices(100, 4, 2, 1).tolist() == [[46, 48, 50, 52]]


def test_dense_multi_clip_spreads_and_rounds_half_to_even():
    # offsets np.round([0, 46.5, 93]) = [0, 46, 93]
    assert dense_test_indices(100, 4, 2, 3).tolist() == [[0, 2, 4, 6], [46, 48, 50, 52], [93, 95, 97, 99]]


def test_dense_k400_protocol_shape_and_last_clip_ends_at_last_frame():
    inds = dense_test_indices(300, 16, 4, 5)
    assert inds.shape == (5, 16)
    assert inds[0, 0] == 0 and inds[-1, -1] == 299
    assert (np.diff(inds, axis=1) == 4).all()


def test_dense_short_video_loops():
    # span 7 > 5 frames: every clip starts at 0 and index 6 wraps to 1
    assert dense_test_indices(5, 4, 2, 1).tolist() == [[0, 2, 4, 1]]
    assert dense_test_indices(5, 4, 2, 2).tolist() == [[0, 2, 4, 1], [0, 2, 4, 1]]


def test_uniform_one_clip_takes_segment_centres():
    assert uniform_test_indices(32, 8, 1).tolist() == [[2, 6, 10, 14, 18, 22, 26, 30]]


def test_uniform_two_chunks_are_starts_then_centres():
    assert uniform_test_indices(32, 8, 2).tolist() == [[0, 4, 8, 12, 16, 20, 24, 28], [2, 6, 10, 14, 18, 22, 26, 30]]


def test_uniform_short_video_repeats_frames():
    # tick = 5/8 = 0.625
    assert uniform_test_indices(5, 8, 1).tolist() == [[0, 0, 1, 2, 2, 3, 4, 4]]
    assert uniform_test_indices(5, 8, 2).tolist() == [[0, 0, 1, 1, 2, 3, 3, 4], [0, 0, 1, 2, 2, 3, 4, 4]]


def videomae_ssv2_test_chunks(num_frames, clip_len):
    """VideoMAE ssv2.py test mode, literally: sorted union of both index lists, then buffer[chunk::2]."""
    tick = num_frames / float(clip_len)
    all_index = [int(tick / 2.0 + tick * x) for x in range(clip_len)] + [int(tick * x) for x in range(clip_len)]
    all_index = np.sort(np.array(all_index))
    return np.stack([all_index[0::2], all_index[1::2]])


@settings(max_examples=200, deadline=None)
@given(num_frames=st.integers(1, 600), clip_len=st.integers(1, 32))
def test_uniform_matches_videomae_reference(num_frames, clip_len):
    np.testing.assert_array_equal(uniform_test_indices(num_frames, clip_len, 2), videomae_ssv2_test_chunks(num_frames, clip_len))


@settings(max_examples=200, deadline=None)
@given(num_frames=st.integers(1, 600), clip_len=st.integers(1, 32), interval=st.integers(1, 8), clips=st.integers(1, 10))
def test_dense_indices_in_range(num_frames, clip_len, interval, clips):
    inds = dense_test_indices(num_frames, clip_len, interval, clips)
    assert inds.shape == (clips, clip_len)
    assert inds.min() >= 0 and inds.max() < num_frames


def test_dispatch_and_errors():
    np.testing.assert_array_equal(sample_test_indices(32, "uniform", 8, 4, 1), uniform_test_indices(32, 8, 1))
    np.testing.assert_array_equal(sample_test_indices(64, "dense", 8, 4, 2), dense_test_indices(64, 8, 4, 2))
    with pytest.raises(ValueError, match="unknown sampler"):
        sample_test_indices(32, "random", 8, 1, 1)
    with pytest.raises(ValueError, match="num_frames"):
        dense_test_indices(0, 8, 1, 1)
