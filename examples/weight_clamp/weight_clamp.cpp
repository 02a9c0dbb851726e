// WeightClampModifier: the example of llm-compressor's "Adding a New Modifier" tutorial, as an
// llmc plugin. It clamps the weights of the targeted modules to [-max, max] at CALIBRATION_END.
// It needs no LibTorch: it edits the host's weight views in place through DLPack.
#include <llmc/sdk/modifier.hpp>

#include <cmath>
#include <cstring>
#include <set>
#include <string>
#include <vector>

namespace {

// bfloat16 / float16 <-> float, enough for clamping in place.
float bf16_to_f32(uint16_t h) {
    uint32_t u = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
uint16_t f32_to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    u += 0x7fff + ((u >> 16) & 1); // round to nearest even
    return static_cast<uint16_t>(u >> 16);
}

// Clamps a contiguous floating-point tensor in place; returns how many values changed.
size_t clamp_in_place(DLTensor &t, double limit) {
    if (t.strides != nullptr) {
        int64_t expect = 1;
        for (int i = t.ndim - 1; i >= 0; --i) {
            if (t.shape[i] != 1 && t.strides[i] != expect)
                throw llmc::sdk::status_error(LLMC_ERR_UNSUPPORTED, "non-contiguous weight");
            expect *= t.shape[i];
        }
    }
    int64_t n = 1;
    for (int i = 0; i < t.ndim; ++i) n *= t.shape[i];
    char *base = static_cast<char *>(t.data) + t.byte_offset;
    size_t changed = 0;
    const float lim = static_cast<float>(limit);
    if (t.dtype.code == kDLFloat && t.dtype.bits == 32) {
        float *p = reinterpret_cast<float *>(base);
        for (int64_t i = 0; i < n; ++i) {
            float c = std::fmin(std::fmax(p[i], -lim), lim);
            changed += c != p[i];
            p[i] = c;
        }
    } else if (t.dtype.code == kDLBfloat && t.dtype.bits == 16) {
        uint16_t *p = reinterpret_cast<uint16_t *>(base);
        for (int64_t i = 0; i < n; ++i) {
            float v = bf16_to_f32(p[i]);
            float c = std::fmin(std::fmax(v, -lim), lim);
            if (c != v) {
                p[i] = f32_to_bf16(c);
                ++changed;
            }
        }
    } else {
        throw llmc::sdk::status_error(LLMC_ERR_UNSUPPORTED, "weight dtype is neither float32 nor bfloat16");
    }
    return changed;
}

class weight_clamp : public llmc::sdk::modifier {
  public:
    void declare(llmc::sdk::param_set &p) override {
        p.add("max_weight_magnitude", max_weight_magnitude_, "maximum allowed absolute value of any weight")
            .exclusive_minimum(0);
        p.add("targets", targets_, "module classes or names to clamp (re: patterns allowed)");
        p.add("ignore", ignore_, "modules to skip");
    }

    bool on_initialize() override {
        // As the tutorial: fail early when nothing matches.
        if (host().match(targets_, ignore_).empty())
            throw llmc::sdk::status_error(LLMC_ERR_INVALID_ARG, "no modules matched targets and ignore");
        return true;
    }

    void on_calibration_end(const llmc::sdk::event &) override {
        size_t changed = 0, modules = 0;
        for (const auto &name : host().match(targets_, ignore_)) {
            if (clamped_.count(name) != 0) continue;
            llmc::sdk::dlpack_ptr w = host().tensor_get(name, "weight");
            changed += clamp_in_place(w->dl_tensor, max_weight_magnitude_);
            clamped_.insert(name);
            ++modules;
        }
        host().info("clamped " + std::to_string(changed) + " weights in " + std::to_string(modules) + " modules to +-" +
                    std::to_string(max_weight_magnitude_));
    }

    bool on_finalize() override {
        clamped_.clear();
        return true;
    }

  private:
    double max_weight_magnitude_ = 1.0;
    std::vector<std::string> targets_{"Linear"};
    std::vector<std::string> ignore_;
    std::set<std::string> clamped_;
};

} // namespace

LLMC_DECLARE_MODIFIER(weight_clamp, "WeightClampModifier", "1.0.0",
                      "Clamps the weights of targeted modules to [-max_weight_magnitude, max_weight_magnitude]", 0)
