// compressed-tensors 0.18 packing: dense little-endian int32 bit packing (pack-quantized) and FP4
// nibble packing (nvfp4/mxfp4-pack-quantized).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace llmc::quant {

// Words holding n values of num_bits bits: ceil(n * num_bits / 32).
int64_t packed_words(int64_t n, int num_bits);

// Packs signed b-bit values (1 <= b <= 8; any integer dtype, each in [-2^(b-1), 2^(b-1)-1])
// into int32. Each value is shifted to u = q + 2^(b-1); along the packed dim, element i takes bits
// [i*b, i*b+b) of a little-endian stream of 32-bit words, spilling into the next word; a row of n
// values takes packed_words(n, b) words. packed_dim 1 packs the columns of a [rows, n] tensor
// (weights: [rows, ceil(n*b/32)]); packed_dim 0 packs the rows (zero points: the transpose is
// packed, [ceil(rows*b/32), cols]). 3-D tensors are packed per 2-D slice along dim 0.
at::Tensor pack_int32(const at::Tensor &q, int num_bits, int packed_dim = 1);
// Inverse of pack_int32; `shape` is the unpacked shape. Returns int8.
at::Tensor unpack_int32(const at::Tensor &packed, int num_bits, at::IntArrayRef shape,
                        int packed_dim = 1);

// FP4 E2M1 codes (uint8 0..15, [rows, n], n even) -> uint8 [rows, n/2]: byte k holds column 2k
// in the low nibble and column 2k+1 in the high nibble.
at::Tensor pack_fp4(const at::Tensor &codes);
// uint8 [rows, n/2] -> codes [rows, n].
at::Tensor unpack_fp4(const at::Tensor &packed);

} // namespace llmc::quant
