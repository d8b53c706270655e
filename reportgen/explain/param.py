"""The image being optimised, parameterised as Lucid/Lucent do it.

Optimising raw pixels yields high-frequency noise that excites a channel without looking
like anything. A Fourier spectrum scaled by 1/f makes all frequencies equally easy to change,
and ImageNet colour decorrelation makes colour directions equally easy too; a sigmoid keeps
pixels in [0, 1]. (Olah et al., "Feature Visualization", Distill 2017.)
"""
from __future__ import annotations

import torch

#: Square root of ImageNet's colour covariance, from Lucid (``color_correlation_svd_sqrt``).
COLOR_CORRELATION_SVD_SQRT = ((0.26, 0.09, 0.02),
                              (0.27, 0.00, -0.05),
                              (0.27, -0.09, 0.03))
#: Lucid's divisor for the inverse FFT; larger values desaturate the start.
_MAGIC = 4.0
_INITIAL_SD = 0.01


def color_matrix(device: torch.device | str = "cpu") -> torch.Tensor:
    """The 3x3 decorrelated-to-RGB matrix, normalised so its largest column norm is 1."""
    matrix = torch.tensor(COLOR_CORRELATION_SVD_SQRT, dtype=torch.float32)
    normalised: torch.Tensor = (matrix / matrix.norm(dim=0).max()).to(device)
    return normalised


def spectrum_scale(size: int, decay_power: float = 1.0) -> torch.Tensor:
    """1/f per rfft2 frequency, floored at 1/size so the DC term stays finite: (size, size//2+1)."""
    fy = torch.fft.fftfreq(size, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(size, dtype=torch.float64)[None, :]
    freqs = (fx * fx + fy * fy).sqrt()
    scale: torch.Tensor = (1.0 / freqs.clamp_min(1.0 / size) ** decay_power).float()
    return scale


class FourierImage:
    """A batch of RGB images in [0, 1]; the optimiser's parameter is ``spectrum``."""

    def __init__(self, generators: list[torch.Generator], size: int,
                 device: torch.device | str = "cpu", decay_power: float = 1.0) -> None:
        self.size = size
        shape = (3, size, size // 2 + 1, 2)  # real and imaginary parts, last
        # One generator per image: an image's start does not depend on its batch neighbours.
        start = torch.stack([torch.randn(shape, generator=g) * _INITIAL_SD for g in generators])
        self.spectrum = start.to(device).requires_grad_(True)
        self._scale = spectrum_scale(size, decay_power).to(device)[None, None, :, :, None]
        self._color = color_matrix(device)

    def __call__(self) -> torch.Tensor:
        """(N, 3, size, size) RGB in [0, 1], differentiable in ``spectrum``."""
        scaled = torch.view_as_complex(self._scale * self.spectrum)
        decorrelated = torch.fft.irfftn(scaled, s=(self.size, self.size), norm="ortho") / _MAGIC
        rgb = torch.einsum("ck,nkhw->nchw", self._color, decorrelated)
        return torch.sigmoid(rgb)
