#include "quant/packing.h"

#include "util/error.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <vector>

namespace llmc::quant {

namespace {

void check_bits(int b) {
    if (b < 1 || b > 8) fail("packing supports 1 to 8 bits, got {}", b);
}

// n unsigned b-bit values into the words of `row` (zeroed), little-endian from bit 0.
void pack_line(const uint32_t *u, int64_t n, int b, uint32_t *row) {
    for (int64_t i = 0; i < n; ++i) {
        const uint64_t bit = static_cast<uint64_t>(i) * b;
        const int64_t w = static_cast<int64_t>(bit / 32);
        const unsigned off = bit % 32;
        row[w] |= u[i] << off;
        if (off + b > 32) row[w + 1] |= u[i] >> (32 - off); // spill into the next word
    }
}

// Packs each row of a contiguous [rows, n] uint32 matrix of b-bit values.
at::Tensor pack_rows(const at::Tensor &u, int b) {
    const int64_t rows = u.size(0), n = u.size(1), words = packed_words(n, b);
    auto out = at::zeros({rows, words}, at::TensorOptions().dtype(at::kInt));
    const int32_t *src = u.data_ptr<int32_t>();
    int32_t *dst = out.data_ptr<int32_t>();
    at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
            pack_line(reinterpret_cast<const uint32_t *>(src + r * n), n, b,
                      reinterpret_cast<uint32_t *>(dst + r * words));
    });
    return out;
}

at::Tensor unpack_rows(const at::Tensor &p, int b, int64_t n) {
    const int64_t rows = p.size(0), words = p.size(1);
    if (words != packed_words(n, b))
        fail("packed tensor has {} words per row, {} values of {} bits need {}", words, n, b,
             packed_words(n, b));
    auto out = at::empty({rows, n}, at::TensorOptions().dtype(at::kChar));
    const auto *src = reinterpret_cast<const uint32_t *>(p.data_ptr<int32_t>());
    int8_t *dst = out.data_ptr<int8_t>();
    const uint32_t mask = (1u << b) - 1u, offset = 1u << (b - 1);
    at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const uint32_t *row = src + r * words;
            for (int64_t i = 0; i < n; ++i) {
                const uint64_t bit = static_cast<uint64_t>(i) * b;
                const int64_t w = static_cast<int64_t>(bit / 32);
                const unsigned off = bit % 32;
                uint32_t v = row[w] >> off;
                if (off + b > 32) v |= row[w + 1] << (32 - off);
                dst[r * n + i] = static_cast<int8_t>(static_cast<int32_t>(v & mask) -
                                                     static_cast<int32_t>(offset));
            }
        }
    });
    return out;
}

// pack_int32 of a small 2-D CPU tensor (zero points, g_idx-sized things) in plain loops: ATen's
// min, max, copies and parallel_for each woke its thread team, which then spun beside the
// exporter's packing threads (a fifth of the CPU time of an asymmetric W4A16 export). Undefined
// when q is not of that kind.
at::Tensor pack_small(const at::Tensor &q, int b, int packed_dim) {
    if (!q.device().is_cpu() || q.dim() != 2 || q.numel() > (int64_t{1} << 20)) return {};
    at::Tensor out;
    AT_DISPATCH_INTEGRAL_TYPES(q.scalar_type(), "pack_small", [&] {
        const auto acc = q.accessor<scalar_t, 2>();
        // Packed along dim 1: each row's values; along dim 0: each column's.
        const int64_t lines = packed_dim == 0 ? q.size(1) : q.size(0), n = packed_dim == 0 ? q.size(0) : q.size(1);
        const int64_t words = packed_words(n, b), lo = -(int64_t{1} << (b - 1)), hi = (int64_t{1} << (b - 1)) - 1;
        at::Tensor packed = at::zeros({lines, words}, at::TensorOptions().dtype(at::kInt));
        uint32_t *dst = reinterpret_cast<uint32_t *>(packed.data_ptr<int32_t>());
        int64_t mn = std::numeric_limits<int64_t>::max(), mx = std::numeric_limits<int64_t>::min();
        std::vector<uint32_t> line(static_cast<size_t>(n));
        for (int64_t l = 0; l < lines; ++l) {
            for (int64_t i = 0; i < n; ++i) {
                const int64_t v = static_cast<int64_t>(packed_dim == 0 ? acc[i][l] : acc[l][i]);
                mn = std::min(mn, v);
                mx = std::max(mx, v);
                line[static_cast<size_t>(i)] = static_cast<uint32_t>(v - lo) & ((1u << b) - 1);
            }
            pack_line(line.data(), n, b, dst + l * words);
        }
        if (q.numel() > 0 && (mn < lo || mx > hi))
            fail("values in [{}, {}] do not fit {} signed bits [{}, {}]", mn, mx, b, lo, hi);
        // Along dim 0 the words run down the columns: [words, columns], as the generic path's.
        out = packed_dim == 0 ? packed.t().contiguous() : packed;
    });
    return out;
}

} // namespace

int64_t packed_words(int64_t n, int num_bits) { return (n * num_bits + 31) / 32; }

at::Tensor pack_int32(const at::Tensor &q, int b, int packed_dim) {
    check_bits(b);
    if (packed_dim != 0 && packed_dim != 1) fail("packed_dim must be 0 or 1, got {}", packed_dim);
    if (q.is_floating_point() || q.scalar_type() == at::kBool)
        fail("packing needs integer values, got {}", c10::toString(q.scalar_type()));
    if (q.dim() == 3) {
        std::vector<at::Tensor> slices;
        for (int64_t i = 0; i < q.size(0); ++i) slices.push_back(pack_int32(q[i], b, packed_dim));
        return at::stack(slices);
    }
    if (q.dim() != 2) fail("packing needs a 2-D or 3-D tensor, got {} dimensions", q.dim());
    if (at::Tensor small = pack_small(q, b, packed_dim); small.defined()) return small;
    const int64_t lo = -(int64_t{1} << (b - 1)), hi = (int64_t{1} << (b - 1)) - 1;
    if (q.numel() > 0) {
        const auto mn = q.min().item<int64_t>(), mx = q.max().item<int64_t>();
        if (mn < lo || mx > hi)
            fail("values in [{}, {}] do not fit {} signed bits [{}, {}]", mn, mx, b, lo, hi);
    }
    const auto device = q.device();
    auto u = (q.to(at::kInt).cpu() + (int32_t{1} << (b - 1)));
    if (packed_dim == 0) return pack_rows(u.t().contiguous(), b).t().contiguous().to(device);
    return pack_rows(u.contiguous(), b).to(device);
}

at::Tensor unpack_int32(const at::Tensor &packed, int b, at::IntArrayRef shape, int packed_dim) {
    check_bits(b);
    if (packed_dim != 0 && packed_dim != 1) fail("packed_dim must be 0 or 1, got {}", packed_dim);
    if (packed.scalar_type() != at::kInt)
        fail("packed weights must be int32, got {}", c10::toString(packed.scalar_type()));
    if (packed.dim() == 3) {
        if (shape.size() != 3) fail("a 3-D packed tensor needs a 3-D shape");
        std::vector<at::Tensor> slices;
        for (int64_t i = 0; i < packed.size(0); ++i)
            slices.push_back(unpack_int32(packed[i], b, shape.slice(1), packed_dim));
        return at::stack(slices);
    }
    if (packed.dim() != 2 || shape.size() != 2)
        fail("unpacking needs a 2-D packed tensor and a 2-D shape");
    const auto device = packed.device();
    auto p = packed.cpu();
    if (packed_dim == 0) {
        if (p.size(1) != shape[1])
            fail("packed zero points have {} columns, shape says {}", p.size(1), shape[1]);
        return unpack_rows(p.t().contiguous(), b, shape[0]).t().contiguous().to(device);
    }
    if (p.size(0) != shape[0]) fail("packed tensor has {} rows, shape says {}", p.size(0), shape[0]);
    return unpack_rows(p.contiguous(), b, shape[1]).to(device);
}

at::Tensor pack_fp4(const at::Tensor &codes) {
    if (codes.scalar_type() != at::kByte)
        fail("FP4 packing needs uint8 codes, got {}", c10::toString(codes.scalar_type()));
    if (codes.dim() != 2) fail("FP4 packing needs a 2-D tensor, got {} dimensions", codes.dim());
    if (codes.size(1) % 2 != 0)
        fail("FP4 packing needs an even number of columns, got {}", codes.size(1));
    if (codes.numel() > 0 && codes.max().item<int>() > 15)
        fail("FP4 codes must be in 0..15, got {}", codes.max().item<int>());
    auto pairs = codes.reshape({codes.size(0), codes.size(1) / 2, 2});
    auto low = pairs.select(2, 0), high = pairs.select(2, 1);
    return at::bitwise_or(low, at::bitwise_left_shift(high, 4)).contiguous();
}

at::Tensor unpack_fp4(const at::Tensor &packed) {
    if (packed.scalar_type() != at::kByte)
        fail("packed FP4 must be uint8, got {}", c10::toString(packed.scalar_type()));
    if (packed.dim() != 2) fail("FP4 unpacking needs a 2-D tensor, got {} dimensions", packed.dim());
    auto low = at::bitwise_and(packed, 0x0F);
    auto high = at::bitwise_right_shift(packed, 4);
    return at::stack({low, high}, 2).reshape({packed.size(0), packed.size(1) * 2});
}

} // namespace llmc::quant
