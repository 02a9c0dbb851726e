#include "io/safetensors.h"

#include "io/file_regions.h"
#include "util/error.h"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#if __has_include(<c10/util/Float8_e4m3fn.h>)
#define LLMC_HAVE_ATEN_FLOAT8 1 // PyTorch >= 2.1: float8 tensors can be written directly
#endif

namespace fs = std::filesystem;

namespace llmc {

namespace {

constexpr uint64_t max_header_bytes = 100ull * 1000 * 1000;
constexpr int max_json_depth = 64;

struct dtype_entry {
    const char *name;
    size_t size;
    at::ScalarType type;
    bool raw_codes;
};

// The dtypes we accept; F8 has no ATen type in LibTorch 1.13, so those are read as byte codes.
const dtype_entry dtype_table[] = {
    {"BF16", 2, at::kBFloat16, false}, {"F16", 2, at::kHalf, false},   {"F32", 4, at::kFloat, false},
    {"F64", 8, at::kDouble, false},    {"I8", 1, at::kChar, false},    {"U8", 1, at::kByte, false},
    {"I16", 2, at::kShort, false},     {"I32", 4, at::kInt, false},    {"I64", 8, at::kLong, false},
    {"BOOL", 1, at::kBool, false},     {"F8_E4M3", 1, at::kByte, true}, {"F8_E5M2", 1, at::kByte, true},
};

const dtype_entry *find_dtype(const std::string &name) {
    for (const auto &d : dtype_table)
        if (name == d.name)
            return &d;
    return nullptr;
}

std::string known_dtypes() {
    std::string s;
    for (const auto &d : dtype_table)
        s += (s.empty() ? "" : ", ") + std::string(d.name);
    return s;
}

// Overflow-checked product of the shape times the element size.
bool byte_length(const std::vector<int64_t> &shape, size_t elem, uint64_t &out) {
    uint64_t n = elem;
    for (int64_t d : shape) {
        if (d < 0 || __builtin_mul_overflow(n, static_cast<uint64_t>(d), &n))
            return false;
    }
    out = n;
    return true;
}

// nlohmann's parser is fine with depth, but destroying a hostile, very deep document is
// recursive; real headers are two levels deep, so refuse anything deep before parsing.
bool json_depth_ok(const char *p, size_t n) {
    int depth = 0;
    bool in_string = false, escaped = false;
    for (size_t i = 0; i < n; ++i) {
        char c = p[i];
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max_json_depth)
                return false;
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
    return true;
}

std::string errno_text() { return std::strerror(errno); }

bool is_shard_file_name(const std::string &name) {
    static const std::regex re(R"(model-\d{5}-of-\d{5}\.safetensors)");
    return std::regex_match(name, re);
}

} // namespace

// ---------------------------------------------------------------------------------------------
// dtypes

size_t safetensors_dtype_size(const std::string &dtype) {
    const dtype_entry *d = find_dtype(dtype);
    if (!d)
        fail("unknown safetensors dtype '{}' (known: {})", dtype, known_dtypes());
    return d->size;
}

bool safetensors_dtype_known(const std::string &dtype) { return find_dtype(dtype) != nullptr; }

at::ScalarType safetensors_scalar_type(const std::string &dtype) {
    const dtype_entry *d = find_dtype(dtype);
    if (!d)
        fail("unknown safetensors dtype '{}' (known: {})", dtype, known_dtypes());
    return d->type;
}

std::string safetensors_dtype_name(at::ScalarType type) {
#ifdef LLMC_HAVE_ATEN_FLOAT8
    if (type == at::ScalarType::Float8_e4m3fn)
        return "F8_E4M3";
    if (type == at::ScalarType::Float8_e5m2)
        return "F8_E5M2";
#endif
    for (const auto &d : dtype_table)
        if (!d.raw_codes && d.type == type)
            return d.name;
    fail("tensor type {} has no safetensors dtype", c10::toString(type));
}

int64_t safetensors_tensor_info::numel() const {
    int64_t n = 1;
    for (int64_t d : shape)
        n *= d;
    return n;
}

// ---------------------------------------------------------------------------------------------
// safetensors_file

struct safetensors_file::mapping {
    void *addr = nullptr;
    size_t size = 0;
    int fd = -1; // kept open: view_and_drop reads original bytes back from it, file_regions readers too
    ~mapping() {
        if (addr) {
            file_regions_remove(addr);
            ::munmap(addr, size);
        }
        if (fd >= 0)
            ::close(fd);
    }
};

safetensors_file::safetensors_file(const std::string &path) : path_(path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        fail("{}: cannot open: {}", path, errno_text());
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        ::close(fd);
        fail("{}: cannot stat: {}", path, errno_text());
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        fail("{}: not a regular file", path);
    }
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    if (size < 8) {
        ::close(fd);
        fail("{}: truncated safetensors file ({} bytes, the header length alone takes 8)", path, size);
    }
    // Private and copy-on-write: tensors may be modified in memory, the file never is.
    void *addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    int mmap_errno = errno;
    if (addr == MAP_FAILED) {
        ::close(fd);
        fail("{}: cannot mmap: {}", path, std::strerror(mmap_errno));
    }
    map_ = std::make_shared<mapping>();
    map_->addr = addr;
    map_->size = size;
    map_->fd = fd;
    file_regions_add(addr, size, fd);

    const auto *base = static_cast<const uint8_t *>(addr);
    uint64_t header_len = 0;
    for (int i = 0; i < 8; ++i)
        header_len |= static_cast<uint64_t>(base[i]) << (8 * i);
    if (header_len > size - 8)
        fail("{}: header length {} is larger than the file allows ({} bytes after the length); truncated or "
             "not a safetensors file",
             path, header_len, size - 8);
    if (header_len >= max_header_bytes)
        fail("{}: header length {} exceeds the 100 MB limit", path, header_len);
    data_offset_ = 8 + header_len;
    const uint64_t data_size = size - data_offset_;

    const char *hp = reinterpret_cast<const char *>(base + 8);
    if (!json_depth_ok(hp, header_len))
        fail("{}: header JSON is nested deeper than {} levels", path, max_json_depth);
    nlohmann::ordered_json header;
    // The parser keeps the last of duplicate keys; a tensor named twice is ambiguous, so look.
    std::unordered_map<std::string, int> top_keys;
    std::string duplicate;
    auto watch_keys = [&](int depth, nlohmann::ordered_json::parse_event_t ev, nlohmann::ordered_json &parsed) {
        if (ev == nlohmann::ordered_json::parse_event_t::key && depth == 1 && parsed.is_string() &&
            top_keys[parsed.get<std::string>()]++ == 1 && duplicate.empty())
            duplicate = parsed.get<std::string>();
        return true;
    };
    try {
        header = nlohmann::ordered_json::parse(hp, hp + header_len, watch_keys);
    } catch (const nlohmann::json::exception &e) {
        fail("{}: header is not valid JSON: {}", path, e.what());
    }
    if (!header.is_object())
        fail("{}: header is not a JSON object", path);
    if (!duplicate.empty())
        fail("{}: tensor '{}' appears twice in the header", path, duplicate);

    std::vector<safetensors_tensor_info> infos;
    for (auto it = header.begin(); it != header.end(); ++it) {
        const std::string &name = it.key();
        const auto &v = it.value();
        if (name == "__metadata__") {
            if (!v.is_object())
                fail("{}: __metadata__ is not a JSON object", path);
            for (auto m = v.begin(); m != v.end(); ++m) {
                if (!m.value().is_string())
                    fail("{}: __metadata__ entry '{}' is not a string", path, m.key());
                metadata_[m.key()] = m.value().get<std::string>();
            }
            continue;
        }
        if (!v.is_object())
            fail("{}: tensor '{}': header entry is not a JSON object", path, name);
        auto dt = v.find("dtype");
        auto sh = v.find("shape");
        auto off = v.find("data_offsets");
        if (dt == v.end() || sh == v.end() || off == v.end())
            fail("{}: tensor '{}': header entry needs dtype, shape and data_offsets", path, name);
        if (!dt->is_string())
            fail("{}: tensor '{}': dtype is not a string", path, name);
        safetensors_tensor_info info;
        info.name = name;
        info.dtype = dt->get<std::string>();
        const dtype_entry *d = find_dtype(info.dtype);
        if (!d)
            fail("{}: tensor '{}': unsupported dtype '{}' (supported: {})", path, name, info.dtype, known_dtypes());
        info.scalar_type = d->type;
        info.raw_codes = d->raw_codes;
        if (!sh->is_array())
            fail("{}: tensor '{}': shape is not an array", path, name);
        for (const auto &dim : *sh) {
            if (!dim.is_number_unsigned() || dim.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
                fail("{}: tensor '{}': shape {} has an entry that is not a non-negative integer", path, name,
                     sh->dump());
            info.shape.push_back(static_cast<int64_t>(dim.get<uint64_t>()));
        }
        if (!off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
            !(*off)[1].is_number_unsigned())
            fail("{}: tensor '{}': data_offsets must be two non-negative integers", path, name);
        info.begin = (*off)[0].get<uint64_t>();
        info.end = (*off)[1].get<uint64_t>();
        if (info.begin > info.end)
            fail("{}: tensor '{}': data_offsets [{}, {}] begin after end", path, name, info.begin, info.end);
        if (info.end > data_size)
            fail("{}: tensor '{}': data_offsets [{}, {}] lie outside the data section ({} bytes); truncated file?",
                 path, name, info.begin, info.end, data_size);
        uint64_t expected = 0;
        if (!byte_length(info.shape, d->size, expected))
            fail("{}: tensor '{}': shape {} overflows", path, name, sh->dump());
        if (expected != info.nbytes())
            fail("{}: tensor '{}': {} bytes in data_offsets but shape {} of {} needs {}", path, name, info.nbytes(),
                 sh->dump(), info.dtype, expected);
        infos.push_back(std::move(info));
    }

    // File order is data order; a stable sort keeps header order among empty tensors.
    std::stable_sort(infos.begin(), infos.end(),
                     [](const auto &a, const auto &b) { return a.begin < b.begin; });
    const safetensors_tensor_info *prev = nullptr;
    for (const auto &info : infos) {
        if (info.nbytes() == 0)
            continue;
        if (prev && info.begin < prev->end)
            fail("{}: tensor '{}' (bytes [{}, {})) overlaps tensor '{}' (bytes [{}, {}))", path, info.name,
                 info.begin, info.end, prev->name, prev->begin, prev->end);
        prev = &info;
    }
    for (auto &info : infos) {
        names_.push_back(info.name);
        index_.emplace(info.name, std::move(info));
    }
}

safetensors_file::~safetensors_file() = default;

uint64_t safetensors_file::file_size() const { return map_->size; }

const safetensors_tensor_info &safetensors_file::info(const std::string &name) const {
    auto it = index_.find(name);
    if (it == index_.end())
        fail("{}: no tensor named '{}'", path_, name);
    return it->second;
}

byte_span safetensors_file::raw(const std::string &name) const {
    const auto &i = info(name);
    return {static_cast<const uint8_t *>(map_->addr) + data_offset_ + i.begin, static_cast<size_t>(i.nbytes())};
}

at::Tensor safetensors_file::tensor(const std::string &name) const {
    const auto &i = info(name);
    byte_span bytes = raw(name);
    auto options = at::TensorOptions().dtype(i.scalar_type).device(at::kCPU);
    if (i.scalar_type == at::kBool) {
        // Bytes other than 0/1 are not valid bools for ATen.
        for (size_t k = 0; k < bytes.size; ++k)
            if (bytes.data[k] > 1)
                fail("{}: tensor '{}': BOOL value {} at element {} is not 0 or 1", path_, name, bytes.data[k], k);
    }
    const size_t elem = safetensors_dtype_size(i.dtype);
    if (bytes.size == 0 || reinterpret_cast<uintptr_t>(bytes.data) % elem != 0) {
        // Empty or misaligned (the format does not promise alignment): copy instead of viewing.
        at::Tensor t = at::empty(i.shape, options);
        if (bytes.size)
            std::memcpy(t.data_ptr(), bytes.data, bytes.size);
        return t;
    }
    auto keep = map_;
    return at::from_blob(const_cast<uint8_t *>(bytes.data), i.shape, [keep](void *) mutable { keep.reset(); },
                         options);
}

namespace {

// Drops the whole pages inside [data, data + size) from this process: a neighbour's data may
// share the edge pages. Private pages (written ones) are freed; file pages are read again on
// the next touch.
void drop_pages(const uint8_t *data, size_t size) {
    const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + page - 1) & ~(page - 1);
    const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + size) & ~(page - 1);
    if (end > begin) ::madvise(reinterpret_cast<void *>(begin), end - begin, MADV_DONTNEED);
}

// The bytes of [data, data + size) outside its whole pages (which drop_pages leaves) read back
// from the file where a write to the view changed them: a later view of the same tensor must
// show the file, and the neighbour sharing such a page keeps its own bytes.
void restore_edges(int fd, const uint8_t *base, const uint8_t *data, size_t size) {
    const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const uintptr_t a = reinterpret_cast<uintptr_t>(data), e = a + size;
    const uintptr_t begin = (a + page - 1) & ~(page - 1), end = e & ~(page - 1);
    std::vector<std::pair<uintptr_t, uintptr_t>> edges;
    if (end > begin) edges = {{a, begin}, {end, e}};
    else edges = {{a, e}};
    std::vector<uint8_t> buf;
    for (const auto &[lo, hi] : edges) {
        if (hi <= lo) continue;
        buf.resize(hi - lo);
        const off_t off = static_cast<off_t>(lo - reinterpret_cast<uintptr_t>(base));
        if (::pread(fd, buf.data(), buf.size(), off) != static_cast<ssize_t>(buf.size())) continue;
        uint8_t *p = reinterpret_cast<uint8_t *>(lo);
        if (std::memcmp(p, buf.data(), buf.size()) != 0) std::memcpy(p, buf.data(), buf.size());
    }
}

} // namespace

at::Tensor safetensors_file::copy_and_drop(const std::string &name, at::ScalarType dtype) const {
    at::Tensor view = tensor(name);
    at::Tensor out = view.scalar_type() == dtype ? view.clone() : view.to(dtype);
    view = at::Tensor();
    const byte_span bytes = raw(name);
    drop_pages(bytes.data, bytes.size);
    return out;
}

at::Tensor safetensors_file::view_and_drop(const std::string &name, at::ScalarType dtype) const {
    const auto &i = info(name);
    const byte_span bytes = raw(name);
    if (i.scalar_type != dtype || i.raw_codes || i.scalar_type == at::kBool || bytes.size == 0 ||
        reinterpret_cast<uintptr_t>(bytes.data) % safetensors_dtype_size(i.dtype) != 0)
        return copy_and_drop(name, dtype);
    auto keep = map_;
    return at::from_blob(
        const_cast<uint8_t *>(bytes.data), i.shape,
        [keep, bytes](void *) mutable {
            drop_pages(bytes.data, bytes.size);
            restore_edges(keep->fd, static_cast<const uint8_t *>(keep->addr), bytes.data, bytes.size);
            keep.reset();
        },
        at::TensorOptions().dtype(dtype).device(at::kCPU));
}

// ---------------------------------------------------------------------------------------------
// safetensors_model

safetensors_model::safetensors_model(const std::string &dir) : dir_(dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
        fail("{}: not a model directory", dir);
    const fs::path single = fs::path(dir) / "model.safetensors";
    const fs::path index = fs::path(dir) / "model.safetensors.index.json";
    // transformers prefers the single file when both exist; so do we.
    if (fs::exists(single, ec)) {
        files_.push_back(std::make_unique<safetensors_file>(single.string()));
        for (const auto &n : files_[0]->names()) {
            names_.push_back(n);
            where_[n] = files_[0].get();
        }
        return;
    }
    if (fs::exists(index, ec)) {
        open_index(index.string());
        return;
    }
    // No safetensors: say why if it is a pickle checkpoint, which we never unpickle.
    std::vector<std::string> pickles;
    for (const auto &e : fs::directory_iterator(dir, ec)) {
        const std::string f = e.path().filename().string();
        const std::string ext = e.path().extension().string();
        if (ext == ".bin" || ext == ".pt" || ext == ".pth" || ext == ".ckpt" || f == "pytorch_model.bin.index.json")
            pickles.push_back(f);
    }
    std::sort(pickles.begin(), pickles.end());
    if (!pickles.empty()) {
        std::string list;
        for (const auto &p : pickles)
            list += (list.empty() ? "" : ", ") + p;
        fail("{}: holds a pickle checkpoint ({}) and no safetensors; llmc does not load pickle files (they can run "
             "code). Convert it to safetensors first, e.g. in Python: AutoModelForCausalLM.from_pretrained(dir)"
             ".save_pretrained(out, safe_serialization=True)",
             dir, list);
    }
    fail("{}: no model.safetensors or model.safetensors.index.json", dir);
}

void safetensors_model::open_index(const std::string &index_path) {
    sharded_ = true;
    std::ifstream in(index_path, std::ios::binary);
    if (!in)
        fail("{}: cannot open", index_path);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    if (text.size() >= max_header_bytes)
        fail("{}: index file larger than 100 MB", index_path);
    if (!json_depth_ok(text.data(), text.size()))
        fail("{}: JSON nested deeper than {} levels", index_path, max_json_depth);
    nlohmann::ordered_json j;
    try {
        j = nlohmann::ordered_json::parse(text);
    } catch (const nlohmann::json::exception &e) {
        fail("{}: not valid JSON: {}", index_path, e.what());
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
        fail("{}: needs a \"weight_map\" object", index_path);
    if (j.contains("metadata") && j["metadata"].is_object())
        for (auto it = j["metadata"].begin(); it != j["metadata"].end(); ++it)
            index_metadata_[it.key()] = it.value().is_string() ? it.value().get<std::string>() : it.value().dump();

    std::error_code ec;
    const fs::path root = fs::canonical(dir_, ec);
    if (ec)
        fail("{}: cannot resolve the model directory: {}", dir_, ec.message());
    // The Hugging Face hub cache links <repo>/snapshots/<rev>/<file> to <repo>/blobs/<hash>:
    // that folder is inside the model too.
    std::vector<fs::path> allowed{root};
    if (root.parent_path().filename() == "snapshots")
        allowed.push_back(root.parent_path().parent_path() / "blobs");
    auto inside = [](const fs::path &p, const fs::path &dir) {
        auto r = p.begin();
        for (auto d = dir.begin(); d != dir.end(); ++d, ++r)
            if (r == p.end() || *r != *d)
                return false;
        return true;
    };
    std::unordered_map<std::string, safetensors_file *> by_shard;
    const auto &wm = j["weight_map"];
    for (auto it = wm.begin(); it != wm.end(); ++it) {
        const std::string &tensor = it.key();
        if (!it.value().is_string())
            fail("{}: weight_map entry for '{}' is not a string", index_path, tensor);
        const std::string shard = it.value().get<std::string>();
        auto found = by_shard.find(shard);
        if (found == by_shard.end()) {
            // Shard names come from the file: keep them inside the directory.
            const fs::path rel(shard);
            if (shard.empty() || rel.is_absolute())
                fail("{}: shard '{}' for tensor '{}' must be a relative file name inside the model directory",
                     index_path, shard, tensor);
            for (const auto &part : rel)
                if (part == "..")
                    fail("{}: shard '{}' for tensor '{}' escapes the model directory ('..')", index_path, shard,
                         tensor);
            const fs::path full = fs::path(dir_) / rel;
            if (!fs::exists(full, ec))
                fail("{}: shard '{}' (for tensor '{}') does not exist", index_path, shard, tensor);
            const fs::path real = fs::canonical(full, ec);
            if (ec)
                fail("{}: cannot resolve shard '{}': {}", index_path, shard, ec.message());
            if (std::none_of(allowed.begin(), allowed.end(), [&](const fs::path &a) { return inside(real, a); }))
                fail("{}: shard '{}' for tensor '{}' resolves to {}, outside the model directory (symlink?)",
                         index_path, shard, tensor, real.string());
            files_.push_back(std::make_unique<safetensors_file>(full.string()));
            found = by_shard.emplace(shard, files_.back().get()).first;
        }
        if (!found->second->contains(tensor))
            fail("{}: tensor '{}' is listed in shard '{}' but that file does not contain it", index_path, tensor,
                 shard);
    }
    // Every tensor of every shard is part of the model; a name in two shards is ambiguous.
    for (const auto &f : files_) {
        for (const auto &n : f->names()) {
            auto [it, inserted] = where_.emplace(n, f.get());
            if (!inserted)
                fail("{}: tensor '{}' appears in both {} and {}", index_path, n, it->second->path(), f->path());
            names_.push_back(n);
        }
    }
}

const safetensors_file &safetensors_model::file_of(const std::string &name) const {
    auto it = where_.find(name);
    if (it == where_.end())
        fail("{}: no tensor named '{}' in the checkpoint", dir_, name);
    return *it->second;
}

// ---------------------------------------------------------------------------------------------
// safetensors_writer

safetensors_writer::safetensors_writer(std::string path, std::map<std::string, std::string> metadata,
                                       uint64_t header_reserve)
    : path_(std::move(path)), metadata_(std::move(metadata)), reserve_((header_reserve + 7) / 8 * 8) {
    data_path_ = reserve_ ? path_ + ".partial" : path_ + ".data.partial";
    data_start_ = reserve_ ? 8 + reserve_ : 0;
    data_ = std::fopen(data_path_.c_str(), "wb");
    if (!data_)
        fail("{}: cannot create: {}", data_path_, errno_text());
    if (data_start_ && std::fseek(data_, static_cast<long>(data_start_), SEEK_SET) != 0) {
        std::fclose(data_);
        data_ = nullptr;
        std::error_code ec;
        fs::remove(data_path_, ec);
        fail("{}: cannot seek: {}", data_path_, errno_text());
    }
}

safetensors_writer::~safetensors_writer() {
    if (!finished_)
        abandon();
}

void safetensors_writer::abandon() {
    pending_.clear();
    pending_bytes_ = 0;
    if (data_) {
        std::fclose(data_);
        data_ = nullptr;
    }
    std::error_code ec;
    fs::remove(path_ + ".data.partial", ec);
    fs::remove(path_ + ".partial", ec);
}

void safetensors_writer::add(const std::string &name, const at::Tensor &t) {
    add(name, t, safetensors_dtype_name(t.scalar_type()));
}

namespace {

// What add() asks of a tensor and its dtype before its bytes are written.
void check_tensor_dtype(const std::string &path, const std::string &name, const at::Tensor &t,
                        const std::string &dtype) {
    if (!t.defined())
        fail("{}: tensor '{}' is undefined", path, name);
    const dtype_entry *d = find_dtype(dtype);
    if (!d)
        fail("{}: tensor '{}': unknown dtype '{}' (known: {})", path, name, dtype, known_dtypes());
    if (static_cast<size_t>(t.element_size()) != d->size)
        fail("{}: tensor '{}': {} elements are {} bytes but dtype {} needs {}", path, name,
             c10::toString(t.scalar_type()), t.element_size(), dtype, d->size);
}

// n bytes from src_fd at src to dst_fd at dst through a buffer (where copy_file_range cannot):
// how many were copied (fewer where src ends), or -1.
ssize_t copy_by_buffer(int src_fd, uint64_t src, int dst_fd, uint64_t dst, size_t n, std::vector<char> &buf) {
    size_t done = 0;
    while (done < n) {
        const ssize_t got = ::pread(src_fd, buf.data(), std::min(buf.size(), n - done), static_cast<off_t>(src + done));
        if (got < 0)
            return done ? static_cast<ssize_t>(done) : -1;
        if (got == 0)
            break; // the file ended: 0 when nothing was copied
        for (ssize_t put = 0; put < got;) {
            const ssize_t k = ::pwrite(dst_fd, buf.data() + put, static_cast<size_t>(got - put),
                                       static_cast<off_t>(dst + done + static_cast<size_t>(put)));
            if (k <= 0)
                return -1;
            put += k;
        }
        done += static_cast<size_t>(got);
    }
    return static_cast<ssize_t>(done);
}

} // namespace

void safetensors_writer::add(const std::string &name, const at::Tensor &t, const std::string &dtype) {
    check_tensor_dtype(path_, name, t, dtype);
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    add_raw(name, dtype, c.sizes().vec(), c.numel() ? c.data_ptr() : nullptr, c.nbytes());
}

bool safetensors_writer::add_deferred(const std::string &name, const at::Tensor &t, const std::string &dtype) {
    check_tensor_dtype(path_, name, t, dtype);
    const size_t nbytes = t.nbytes();
    std::optional<file_range> src;
    if (nbytes >= (size_t{1} << 20) && t.device().is_cpu() && t.is_contiguous())
        src = file_range_clean(t.data_ptr(), nbytes);
    if (!src) {
        add(name, t, dtype);
        return false;
    }
    const std::vector<int64_t> shape = t.sizes().vec();
    check_add(name, dtype, shape, nbytes);
    // The tensors added next go behind its place (a hole in the file until it is copied).
    if (std::fflush(data_) != 0 ||
        std::fseek(data_, static_cast<long>(data_start_ + data_bytes_ + nbytes), SEEK_SET) != 0)
        fail("{}: cannot write tensor '{}': {}", path_, name, errno_text());
    pending_.push_back({name, t, src->fd, src->offset, data_start_ + data_bytes_, nbytes});
    pending_bytes_ += nbytes;
    seen_[name] = entries_.size();
    entries_.push_back({name, dtype, shape, data_bytes_, data_bytes_ + nbytes});
    data_bytes_ += nbytes;
    return true;
}

uint64_t safetensors_writer::copy_pending(uint64_t max_bytes) {
    while (!pending_.empty() && max_bytes > 0) {
        pending_copy &p = pending_.front();
        const size_t want = static_cast<size_t>(std::min<uint64_t>({p.left, max_bytes, uint64_t{1} << 30}));
        // Positional on both sides: stdio's position in the data file stays where it is.
        loff_t in = static_cast<loff_t>(p.src), out = static_cast<loff_t>(p.dst);
        ssize_t n = copy_range_fails_ ? -1 : ::copy_file_range(p.src_fd, &in, ::fileno(data_), &out, want, 0);
        if (n <= 0) { // EXDEV (another file system), ENOSYS, ...: not tried again
            copy_range_fails_ = true;
            if (bounce_.empty())
                bounce_.resize(size_t{1} << 20); // kept: a fresh buffer per piece costs its page faults
            n = copy_by_buffer(p.src_fd, p.src, ::fileno(data_), p.dst, want, bounce_);
        }
        if (n <= 0)
            fail("{}: cannot write tensor '{}': {}", path_, p.name, n == 0 ? "its input file ended early" : errno_text());
        const auto k = static_cast<uint64_t>(n);
        p.src += k;
        p.dst += k;
        p.left -= k;
        pending_bytes_ -= k;
        max_bytes -= std::min(max_bytes, k);
        if (p.left == 0)
            pending_.pop_front();
    }
    return pending_bytes_;
}

void safetensors_writer::check_add(const std::string &name, const std::string &dtype,
                                   const std::vector<int64_t> &shape, size_t nbytes) {
    if (finished_)
        fail("{}: add after finish", path_);
    if (name.empty() || name == "__metadata__")
        fail("{}: '{}' is not a valid tensor name", path_, name);
    if (seen_.count(name))
        fail("{}: tensor '{}' added twice", path_, name);
    const dtype_entry *d = find_dtype(dtype);
    if (!d)
        fail("{}: tensor '{}': unknown dtype '{}' (known: {})", path_, name, dtype, known_dtypes());
    uint64_t expected = 0;
    if (!byte_length(shape, d->size, expected) || expected != nbytes)
        fail("{}: tensor '{}': {} bytes given but its shape and dtype {} need {}", path_, name, nbytes, dtype,
             expected);
}

void safetensors_writer::add_raw(const std::string &name, const std::string &dtype,
                                 const std::vector<int64_t> &shape, const void *data, size_t nbytes) {
    check_add(name, dtype, shape, nbytes);
    if (nbytes && !write_data(data, nbytes))
        fail("{}: cannot write tensor '{}': {}", path_, name, errno_text());
    seen_[name] = entries_.size();
    entries_.push_back({name, dtype, shape, data_bytes_, data_bytes_ + nbytes});
    data_bytes_ += nbytes;
}

bool safetensors_writer::write_data(const void *data, size_t nbytes) {
    // Bytes still as a mapped input file has them are copied from that file inside the kernel
    // (a reflink where the file system can): twice as fast as write() from the mapping here.
    // Small ones are not worth the page-table lookup.
    size_t done = 0;
    if (nbytes >= (size_t{1} << 20)) {
        if (const auto src = file_range_clean(data, nbytes); src && std::fflush(data_) == 0) {
            const int out = ::fileno(data_);
            loff_t in_off = static_cast<loff_t>(src->offset);
            while (done < nbytes) {
                const ssize_t n = ::copy_file_range(src->fd, &in_off, out, nullptr, nbytes - done, 0);
                if (n <= 0) break; // EXDEV, ENOSYS, ...: the rest is written from memory
                done += static_cast<size_t>(n);
            }
            // stdio's idea of the position must follow the descriptor's.
            if (done > 0 && std::fseek(data_, static_cast<long>(data_start_ + data_bytes_ + done), SEEK_SET) != 0)
                return false;
        }
    }
    const size_t rest = nbytes - done;
    return rest == 0 || std::fwrite(static_cast<const uint8_t *>(data) + done, 1, rest, data_) == rest;
}

void safetensors_writer::finish() {
    if (finished_)
        return;
    const std::string partial = path_ + ".partial";
    try {
        copy_pending(UINT64_MAX);
        nlohmann::ordered_json header = nlohmann::ordered_json::object();
        if (!metadata_.empty()) {
            nlohmann::ordered_json m = nlohmann::ordered_json::object();
            for (const auto &[k, v] : metadata_)
                m[k] = v;
            header["__metadata__"] = m;
        }
        for (const auto &e : entries_)
            header[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {e.begin, e.end}}};
        std::string text = header.dump();
        // Spaces up to a multiple of 8 keep the data section 8-byte aligned.
        text.append((8 - text.size() % 8) % 8, ' ');
        std::string prefix(8, '\0');
        auto put_length = [&](uint64_t n) {
            for (int i = 0; i < 8; ++i)
                prefix[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
        };

        if (reserve_ && text.size() <= reserve_) {
            // The header goes in front of the data already in place.
            text.append(reserve_ - text.size(), ' ');
            put_length(text.size());
            bool ok = std::fflush(data_) == 0;
            const int fd = ::fileno(data_);
            ok = ok && ::pwrite(fd, prefix.data(), 8, 0) == 8 &&
                 ::pwrite(fd, text.data(), text.size(), 8) == static_cast<ssize_t>(text.size());
            const int close_rc = std::fclose(data_);
            data_ = nullptr;
            if (!ok || close_rc != 0)
                fail("{}: cannot write: {}", partial, errno_text());
        } else {
            if (std::fclose(data_) != 0) {
                data_ = nullptr;
                fail("{}: cannot write: {}", data_path_, errno_text());
            }
            data_ = nullptr;
            // The reserve was too small: the data moves out of the way, then is copied behind
            // the header.
            if (data_path_ == partial) {
                const std::string moved = path_ + ".data.partial";
                std::error_code ec;
                fs::rename(data_path_, moved, ec);
                if (ec)
                    fail("{}: cannot rename: {}", data_path_, ec.message());
                data_path_ = moved;
            }
            put_length(text.size());
            std::FILE *out = std::fopen(partial.c_str(), "wb");
            if (!out)
                fail("{}: cannot create: {}", partial, errno_text());
            std::FILE *in = std::fopen(data_path_.c_str(), "rb");
            bool ok = in != nullptr && std::fwrite(prefix.data(), 1, 8, out) == 8 &&
                      std::fwrite(text.data(), 1, text.size(), out) == text.size() && std::fflush(out) == 0;
            // Copied inside the kernel (no trip through a user buffer; a reflink where the file
            // system can), read and written as a fallback.
            uint64_t done = 0;
            while (ok && done < data_bytes_) {
                loff_t off = static_cast<loff_t>(data_start_ + done);
                const ssize_t n = ::copy_file_range(::fileno(in), &off, ::fileno(out), nullptr,
                                                    static_cast<size_t>(std::min<uint64_t>(data_bytes_ - done, 1ull << 30)), 0);
                if (n <= 0)
                    break;
                done += static_cast<uint64_t>(n);
            }
            if (ok && done < data_bytes_) {
                ok = ::lseek(::fileno(in), static_cast<off_t>(data_start_ + done), SEEK_SET) >= 0 &&
                     ::lseek(::fileno(out), static_cast<off_t>(8 + text.size() + done), SEEK_SET) >= 0;
                std::vector<char> buf(1 << 20);
                ssize_t got = 0;
                while (ok && (got = ::read(::fileno(in), buf.data(), buf.size())) > 0)
                    ok = ::write(::fileno(out), buf.data(), static_cast<size_t>(got)) == got;
                ok = ok && got == 0;
            }
            if (in)
                std::fclose(in);
            if (std::fclose(out) != 0)
                ok = false;
            if (!ok)
                fail("{}: cannot write: {}", partial, errno_text());
        }
        std::error_code ec;
        fs::rename(partial, path_, ec);
        if (ec)
            fail("{}: cannot rename into place: {}", path_, ec.message());
        if (data_path_ != partial)
            fs::remove(data_path_, ec);
        finished_ = true;
    } catch (...) {
        abandon();
        throw;
    }
}

// ---------------------------------------------------------------------------------------------
// safetensors_sharded_writer

safetensors_sharded_writer::safetensors_sharded_writer(std::string dir, uint64_t max_shard_bytes,
                                                       std::map<std::string, std::string> metadata,
                                                       uint64_t header_reserve)
    : dir_(std::move(dir)), max_shard_bytes_(max_shard_bytes), metadata_(std::move(metadata)),
      header_reserve_(header_reserve) {
    if (max_shard_bytes_ == 0)
        fail("{}: max shard size must be positive", dir_);
    std::error_code ec;
    fs::create_directories(dir_, ec);
    if (ec)
        fail("{}: cannot create directory: {}", dir_, ec.message());
}

safetensors_sharded_writer::~safetensors_sharded_writer() {
    if (finished_)
        return;
    current_.reset();
    std::error_code ec;
    for (const auto &p : shard_tmp_)
        fs::remove(p, ec);
}

void safetensors_sharded_writer::check_name(const std::string &name) {
    if (finished_)
        fail("{}: add after finish", dir_);
    if (!seen_.emplace(name, true).second)
        fail("{}: tensor '{}' added twice", dir_, name);
}

safetensors_writer &safetensors_sharded_writer::shard_for(uint64_t nbytes) {
    if (current_ && current_->count() > 0 && current_->data_bytes() + nbytes > max_shard_bytes_)
        close_current();
    if (!current_) {
        const std::string p =
            (fs::path(dir_) / fmt::format("model-{:05d}.safetensors.pending", shard_tmp_.size() + 1)).string();
        current_ = std::make_unique<safetensors_writer>(p, metadata_, header_reserve_);
    }
    return *current_;
}

void safetensors_sharded_writer::close_current() {
    current_->finish();
    shard_tmp_.push_back(current_->path());
    current_.reset();
}

void safetensors_sharded_writer::add(const std::string &name, const at::Tensor &t) {
    add(name, t, safetensors_dtype_name(t.scalar_type()));
}

void safetensors_sharded_writer::add(const std::string &name, const at::Tensor &t, const std::string &dtype) {
    check_name(name);
    auto &w = shard_for(static_cast<uint64_t>(t.nbytes()));
    w.add(name, t, dtype);
    weight_shard_.emplace_back(name, shard_tmp_.size());
    total_bytes_ += t.nbytes();
}

void safetensors_sharded_writer::add_raw(const std::string &name, const std::string &dtype,
                                         const std::vector<int64_t> &shape, const void *data, size_t nbytes) {
    check_name(name);
    auto &w = shard_for(nbytes);
    w.add_raw(name, dtype, shape, data, nbytes);
    weight_shard_.emplace_back(name, shard_tmp_.size());
    total_bytes_ += nbytes;
}

bool safetensors_sharded_writer::add_deferred(const std::string &name, const at::Tensor &t, const std::string &dtype) {
    if (!t.defined())
        fail("{}: tensor '{}' is undefined", dir_, name);
    const std::string d = dtype.empty() ? safetensors_dtype_name(t.scalar_type()) : dtype;
    check_name(name);
    auto &w = shard_for(static_cast<uint64_t>(t.nbytes()));
    const bool deferred = w.add_deferred(name, t, d);
    weight_shard_.emplace_back(name, shard_tmp_.size());
    total_bytes_ += t.nbytes();
    return deferred;
}

uint64_t safetensors_sharded_writer::copy_pending(uint64_t max_bytes) {
    return current_ ? current_->copy_pending(max_bytes) : 0;
}

std::vector<std::string> safetensors_sharded_writer::finish() {
    if (finished_)
        fail("{}: finish called twice", dir_);
    if (current_ || shard_tmp_.empty()) {
        shard_for(0); // an empty model still gets a (valid, empty) model.safetensors
        close_current();
    }
    const size_t n = shard_tmp_.size();
    std::vector<std::string> finals;
    for (size_t i = 0; i < n; ++i)
        finals.push_back(n == 1 ? "model.safetensors" : fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, n));

    // Files of an earlier save in the same directory would mislead a later load.
    std::error_code ec;
    const fs::path d(dir_);
    fs::remove(d / (n == 1 ? "model.safetensors.index.json" : "model.safetensors"), ec);
    for (const auto &e : fs::directory_iterator(d, ec)) {
        const std::string f = e.path().filename().string();
        if (is_shard_file_name(f) && std::find(finals.begin(), finals.end(), f) == finals.end())
            fs::remove(e.path(), ec);
    }

    for (size_t i = 0; i < n; ++i) {
        fs::rename(shard_tmp_[i], d / finals[i], ec);
        if (ec)
            fail("{}: cannot rename shard into place: {}", (d / finals[i]).string(), ec.message());
    }
    finished_ = true;
    if (n > 1) {
        nlohmann::json index;
        index["metadata"] = {{"total_size", total_bytes_}};
        nlohmann::json wm = nlohmann::json::object();
        for (const auto &[name, shard] : weight_shard_)
            wm[name] = finals[shard];
        index["weight_map"] = wm;
        const fs::path ip = d / "model.safetensors.index.json";
        const fs::path tmp = d / "model.safetensors.index.json.partial";
        {
            std::ofstream out(tmp, std::ios::binary);
            out << index.dump(2) << "\n";
            if (!out)
                fail("{}: cannot write", tmp.string());
        }
        fs::rename(tmp, ip, ec);
        if (ec)
            fail("{}: cannot rename into place: {}", ip.string(), ec.message());
        finals.push_back("model.safetensors.index.json");
    }
    return finals;
}

} // namespace llmc
