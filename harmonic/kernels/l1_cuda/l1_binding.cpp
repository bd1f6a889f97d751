// PyTorch binding of the CUDA L1 kernels (l1_heads.h): tensor checks, allocation, the current stream.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include <vector>

#include "l1_heads.h"

namespace {

l1cuda::Problem problem(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& aa,
                        const torch::Tensor& bb, const torch::Tensor& y, int64_t kind, double n_exp, double eps,
                        double scale, double p, double alpha, double smoothing) {
    TORCH_CHECK(a.is_cuda() && b.is_cuda(), "l1_cuda: inputs must be CUDA tensors");
    TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(1), "l1_cuda: a must be N x D, b V x D");
    TORCH_CHECK(a.scalar_type() == b.scalar_type(), "l1_cuda: a and b must share a dtype");
    TORCH_CHECK(a.scalar_type() == at::kFloat || a.scalar_type() == at::kBFloat16, "l1_cuda: fp32 or bf16 only");
    TORCH_CHECK(a.is_contiguous() && b.is_contiguous(), "l1_cuda: contiguous inputs only");
    TORCH_CHECK(kind >= l1cuda::MANHATTAN && kind <= l1cuda::BRAYABS, "l1_cuda: unknown kind ", kind);
    TORCH_CHECK(kind != l1cuda::MINKOWSKI || p >= 1.0, "l1_cuda: minkowski needs p >= 1 (got ", p, ")");
    TORCH_CHECK(kind != l1cuda::SMOOTH || alpha > 0.0, "l1_cuda: chebyshev_smooth needs alpha > 0 (got ", alpha, ")");
    TORCH_CHECK(a.size(0) < (1L << 24) && b.size(0) < (1L << 24) && a.size(1) < (1L << 24), "l1_cuda: too large");
    TORCH_CHECK(aa.scalar_type() == at::kFloat && bb.scalar_type() == at::kFloat && y.scalar_type() == at::kInt,
                "l1_cuda: aa, bb fp32, y int32");
    TORCH_CHECK(aa.numel() == a.size(0) && bb.numel() == b.size(0) && y.numel() == a.size(0), "l1_cuda: sizes");
    const int d = a.size(1);
    const bool vec = d % 8 == 0 && reinterpret_cast<uintptr_t>(a.data_ptr()) % 16 == 0 &&
                     reinterpret_cast<uintptr_t>(b.data_ptr()) % 16 == 0;
    return {a.data_ptr(), b.data_ptr(), aa.data_ptr<float>(), bb.data_ptr<float>(), y.data_ptr<int>(),
            static_cast<int>(a.size(0)), static_cast<int>(b.size(0)), d, static_cast<int>(kind),
            a.scalar_type() == at::kBFloat16, vec, static_cast<float>(n_exp), static_cast<float>(eps),
            static_cast<float>(scale), static_cast<float>(smoothing), static_cast<float>(p),
            static_cast<float>(alpha)};
}

// Per-split row statistics [m, s, zsum, zt], each splits x N, for harmonic.kernels._loss.finish_rows; with
// keep_sums also the per-pair kept values (kept_arrays x N x padded V, fp32; l1_kernels.cuh's kept_sum; bray_curtis
// keeps both of its sums) for the backward.
std::vector<torch::Tensor> forward(torch::Tensor a, torch::Tensor b, torch::Tensor aa, torch::Tensor bb,
                                   torch::Tensor y, int64_t kind, double n_exp, double eps, double scale,
                                   double pw, double alpha, bool keep_sums) {
    const c10::cuda::CUDAGuard guard(a.device());
    const l1cuda::Problem p = problem(a, b, aa, bb, y, kind, n_exp, eps, scale, pw, alpha, 0.0);
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    l1cuda::Partials parts;
    C10_CUDA_CHECK(l1cuda::forward(p, parts, stream));  // the number of splits
    std::vector<torch::Tensor> out;
    for (int q = 0; q < 4; ++q) out.push_back(torch::empty({parts.splits, p.n}, a.options().dtype(at::kFloat)));
    parts.m = out[0].data_ptr<float>();
    parts.s = out[1].data_ptr<float>();
    parts.zsum = out[2].data_ptr<float>();
    parts.zt = out[3].data_ptr<float>();
    if (keep_sums) {
        out.push_back(torch::empty({l1cuda::kept_arrays(p.kind), p.n, l1cuda::padded_classes(p.v)},
                                   a.options().dtype(at::kFloat)));
        parts.sums = out[4].data_ptr<float>();
    }
    C10_CUDA_CHECK(l1cuda::forward(p, parts, stream));
    return out;
}

// [dx, dW, daa, dbb] in fp32 (dx / dW empty where not needed); G stays under max_g_bytes (row chunks); fused: one
// sweep for dx and dW where the kind has it (Grads::fused).
std::vector<torch::Tensor> backward(torch::Tensor a, torch::Tensor b, torch::Tensor aa, torch::Tensor bb,
                                    torch::Tensor y, torch::Tensor lse, torch::Tensor gw, int64_t kind,
                                    double n_exp, double eps, double scale, double pw, double alpha, double smoothing,
                                    int64_t max_g_bytes, bool need_x, bool need_w, torch::Tensor sums, bool fused) {
    const c10::cuda::CUDAGuard guard(a.device());
    const l1cuda::Problem p = problem(a, b, aa, bb, y, kind, n_exp, eps, scale, pw, alpha, smoothing);
    TORCH_CHECK(lse.scalar_type() == at::kFloat && gw.scalar_type() == at::kFloat && lse.is_contiguous() &&
                    gw.is_contiguous() && lse.numel() == p.n && gw.numel() == p.n,
                "l1_cuda: lse and gw must be contiguous fp32 of N values");
    const bool stored = sums.numel() > 0;  // else the sums are recomputed
    TORCH_CHECK(!stored || (sums.scalar_type() == at::kFloat && sums.is_contiguous() && sums.dim() == 3 &&
                            sums.size(0) == l1cuda::kept_arrays(p.kind) && sums.size(1) == p.n &&
                            sums.size(2) == l1cuda::padded_classes(p.v)),
                "l1_cuda: sums must be the forward's kept_arrays x N x padded-V fp32 tensor");
    auto f32 = a.options().dtype(at::kFloat);
    auto dx = need_x ? torch::zeros({p.n, p.d}, f32) : torch::empty({0}, f32);
    auto dw = need_w ? torch::zeros({p.v, p.d}, f32) : torch::empty({0}, f32);
    auto daa = torch::zeros({p.n}, f32), dbb = torch::zeros({p.v}, f32);
    const int rows = l1cuda::chunk_rows(p.n, p.v, p.kind, max_g_bytes);
    auto g = torch::empty({rows * l1cuda::coefficient_arrays(p.kind), l1cuda::padded_classes(p.v)}, f32);
    const l1cuda::Grads grads{lse.data_ptr<float>(), gw.data_ptr<float>(), g.data_ptr<float>(), rows,
                              need_x ? dx.data_ptr<float>() : nullptr, need_w ? dw.data_ptr<float>() : nullptr,
                              daa.data_ptr<float>(), dbb.data_ptr<float>(),
                              stored ? sums.data_ptr<float>() : nullptr, fused};
    C10_CUDA_CHECK(l1cuda::backward(p, grads, c10::cuda::getCurrentCUDAStream()));
    return {dx, dw, daa, dbb};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "CUDA C++ kernels of the elementwise (L1-type) harmonic heads (harmonic/kernels/l1_cuda)";
    m.def("forward", &forward, "per-split log-sum-exp partials [m, s, zsum, zt] (+ the pair sums with keep_sums)");
    m.def("backward", &backward, "[dx, dW, daa, dbb] in float32");
}
