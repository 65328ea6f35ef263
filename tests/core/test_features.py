import mdtraj
import numpy as np
import pytest
import torch

from cvplug.features import Cartesians, Concatenate, Dihedrals, PairwiseDistances, kabsch_align

PHI, PSI = (4, 6, 8, 14), (6, 8, 14, 16)
HEAVY = [1, 4, 5, 6, 8, 10, 14, 15, 16, 18]


def random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_phi_psi_match_mdtraj(ala2_frames):
    xyz = torch.tensor(ala2_frames.xyz, dtype=torch.float64)
    ours = Dihedrals([PHI, PSI])(xyz).numpy()
    _, phi = mdtraj.compute_phi(ala2_frames)
    _, psi = mdtraj.compute_psi(ala2_frames)
    assert mdtraj.compute_phi(ala2_frames)[0].tolist() == [list(PHI)]
    np.testing.assert_allclose(ours[:, 0], phi[:, 0], atol=1e-5)
    np.testing.assert_allclose(ours[:, 1], psi[:, 0], atol=1e-5)


def test_sincos_dihedrals_are_sin_and_cos_of_angles(ala2_frames):
    xyz = torch.tensor(ala2_frames.xyz, dtype=torch.float64)
    angles = Dihedrals([PHI, PSI])(xyz)
    both = Dihedrals([PHI, PSI], sincos=True)(xyz)
    torch.testing.assert_close(both, torch.cat([angles.sin(), angles.cos()], -1))


def test_pairwise_distances_match_mdtraj(ala2_frames):
    feature = PairwiseDistances(atoms=HEAVY)
    assert feature.n_out == 45
    pairs = np.array(feature.describe()["pairs"])
    expected = mdtraj.compute_distances(ala2_frames, pairs, periodic=False)
    np.testing.assert_allclose(feature(torch.tensor(ala2_frames.xyz, dtype=torch.float64)).numpy(), expected,
                               rtol=1e-5)


def test_kabsch_alignment_removes_rotation_and_translation(ala2_frames, rng):
    xyz = torch.tensor(ala2_frames.xyz[:5], dtype=torch.float64)
    feature = Cartesians(HEAVY, reference=xyz[0, HEAVY])
    moved = xyz @ torch.tensor(random_rotation(rng)).T + torch.tensor([1.0, -2.0, 0.5])
    torch.testing.assert_close(feature(moved), feature(xyz))
    # the aligned frame 0 is the centred reference itself
    reference = xyz[0, HEAVY] - xyz[0, HEAVY].mean(0)
    torch.testing.assert_close(feature(xyz[:1])[0].reshape(-1, 3), reference)


def test_kabsch_never_reflects(rng):
    reference = torch.tensor(rng.normal(size=(6, 3)))
    mirrored = reference * torch.tensor([1.0, 1.0, -1.0])
    aligned = kabsch_align(mirrored[None], reference)[0]
    rotation = torch.linalg.lstsq(mirrored - mirrored.mean(0), aligned).solution
    assert torch.linalg.det(rotation).item() == pytest.approx(1.0, abs=1e-8)


def test_cartesian_components_select_toy_coordinates():
    positions = torch.arange(6.0).reshape(1, 2, 3)
    assert Cartesians([1], components=(0, 1))(positions).tolist() == [[3.0, 4.0]]
    with pytest.raises(ValueError, match="components"):
        Cartesians([0], components=(3,))


@pytest.mark.parametrize("feature", [
    Dihedrals([PHI, PSI], sincos=True), PairwiseDistances(pairs=[(1, 4), (6, 14)]),
    Concatenate([Dihedrals([PHI]), PairwiseDistances(atoms=[4, 6, 8])]), Cartesians(HEAVY[:4], torch.randn(4, 3))])
def test_features_script_and_differentiate(feature, ala2_frames):
    xyz = torch.tensor(ala2_frames.xyz[:3], dtype=torch.float64, requires_grad=True)
    scripted = torch.jit.script(feature)
    torch.testing.assert_close(scripted(xyz), feature(xyz))
    feature = feature.double()
    assert torch.autograd.gradcheck(feature, (xyz,))


def test_bad_feature_definitions_raise():
    with pytest.raises(ValueError, match="four"):
        Dihedrals([(1, 2, 3)])
    with pytest.raises(ValueError, match="either"):
        PairwiseDistances()
    with pytest.raises(ValueError, match="different"):
        PairwiseDistances(pairs=[(2, 2)])
    with pytest.raises(ValueError, match="shape"):
        Cartesians([0, 1], reference=torch.zeros(3, 3))
