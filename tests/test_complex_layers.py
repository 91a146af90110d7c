import torch
import torch.nn.functional as F

from kcross_metric.core.nets.complex import (
    ComplexBatchNorm2d,
    ComplexConv2d,
    ComplexConvTranspose2d,
    ComplexLeakyReLU,
    ComplexLinear,
    ComplexReLU,
    ComplexTanh,
    ComplexUpsample,
)


def _crandn(*shape):
    return torch.complex(torch.randn(*shape, dtype=torch.float64), torch.randn(*shape, dtype=torch.float64))


def test_complex_conv_matches_complex_arithmetic():
    torch.manual_seed(0)
    conv = ComplexConv2d(3, 4, 3, stride=2, padding=1).double()
    with torch.no_grad():
        conv.bias_real.normal_()
        conv.bias_imag.normal_()
    z = _crandn(2, 3, 9, 9)
    w = torch.complex(conv.weight_real, conv.weight_imag)
    b = torch.complex(conv.bias_real, conv.bias_imag)
    expected = F.conv2d(z, w, b, stride=2, padding=1)  # torch's native complex convolution
    assert torch.allclose(conv(z), expected, atol=1e-10)


def test_imaginary_output_sees_real_input():
    conv = ComplexConv2d(1, 1, 1, bias=False).double()
    with torch.no_grad():
        conv.weight_real.fill_(0.0)
        conv.weight_imag.fill_(2.0)  # W = 2i
    z = torch.complex(torch.ones(1, 1, 2, 2, dtype=torch.float64), torch.zeros(1, 1, 2, 2, dtype=torch.float64))
    out = conv(z)
    assert torch.allclose(out.imag, torch.full_like(out.imag, 2.0))  # 2i * 1 = 2i
    assert torch.allclose(out.real, torch.zeros_like(out.real))


def test_complex_transposed_conv_matches_complex_arithmetic():
    torch.manual_seed(1)
    conv = ComplexConvTranspose2d(3, 2, 2, stride=2).double()
    with torch.no_grad():
        conv.bias_real.normal_()
        conv.bias_imag.normal_()
    z = _crandn(2, 3, 5, 4)
    a, bw = conv.weight_real, conv.weight_imag
    x, y = z.real, z.imag
    real = F.conv_transpose2d(x, a, stride=2) - F.conv_transpose2d(y, bw, stride=2)
    imag = F.conv_transpose2d(y, a, stride=2) + F.conv_transpose2d(x, bw, stride=2)
    expected = torch.complex(real, imag) + torch.complex(conv.bias_real, conv.bias_imag)[None, :, None, None]
    assert torch.allclose(conv(z), expected, atol=1e-10)
    # and against torch's complex transposed convolution
    native = F.conv_transpose2d(z, torch.complex(a, bw), torch.complex(conv.bias_real, conv.bias_imag), stride=2)
    assert torch.allclose(conv(z), native, atol=1e-10)


def test_complex_linear_matches_matmul():
    torch.manual_seed(2)
    lin = ComplexLinear(5, 3).double()
    with torch.no_grad():
        lin.bias_real.normal_()
        lin.bias_imag.normal_()
    z = _crandn(4, 5)
    w = torch.complex(lin.weight_real, lin.weight_imag)
    expected = z @ w.T + torch.complex(lin.bias_real, lin.bias_imag)
    assert torch.allclose(lin(z), expected, atol=1e-12)


def test_split_activations_act_per_part():
    z = torch.complex(torch.tensor([-1.0, 2.0]), torch.tensor([3.0, -4.0]))
    assert torch.equal(ComplexReLU()(z), torch.complex(torch.tensor([0.0, 2.0]), torch.tensor([3.0, 0.0])))
    lr = ComplexLeakyReLU(0.1)(z)
    assert torch.allclose(lr.real, torch.tensor([-0.1, 2.0])) and torch.allclose(lr.imag, torch.tensor([3.0, -0.4]))
    th = ComplexTanh()(z)
    assert torch.allclose(th.real, torch.tanh(z.real)) and torch.allclose(th.imag, torch.tanh(z.imag))


def test_batchnorm_and_upsample_per_part():
    torch.manual_seed(3)
    z = torch.complex(torch.randn(4, 2, 3, 3) * 5 + 2, torch.randn(4, 2, 3, 3) * 0.1 - 1)
    bn = ComplexBatchNorm2d(2).train()
    out = bn(z)
    assert torch.allclose(out.real.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(out.imag.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-5)
    up = ComplexUpsample(2, mode="nearest")(z)
    assert up.shape == (4, 2, 6, 6)
    assert torch.equal(up.real, F.interpolate(z.real, scale_factor=2, mode="nearest"))


def test_gradcheck_complex_conv():
    torch.manual_seed(4)
    conv = ComplexConv2d(1, 2, 3, padding=1).double()
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randn(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: torch.view_as_real(conv(torch.complex(a, b))), (x, y))
