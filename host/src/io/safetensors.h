// Safetensors: a validating, zero-copy reader (one file or a model directory, sharded or not)
// and streaming writers (one file, or HF-style shards with an index).
// Format: 8-byte little-endian header length, JSON header, then the raw data section.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace llmc {

// Size in bytes of one element of a safetensors dtype ("BF16" -> 2); throws on unknown dtypes.
size_t safetensors_dtype_size(const std::string &dtype);
// True for the dtypes this reader accepts.
bool safetensors_dtype_known(const std::string &dtype);
// The ATen type tensor() returns for a dtype: F8_* have no ATen type in LibTorch 1.13 and come
// back as kByte raw codes.
at::ScalarType safetensors_scalar_type(const std::string &dtype);
// The safetensors dtype of an ATen type (kBFloat16 -> "BF16"); throws for types with none.
std::string safetensors_dtype_name(at::ScalarType type);

struct safetensors_tensor_info {
    std::string name;
    std::string dtype;           // as in the file: "BF16", "F8_E4M3", ...
    std::vector<int64_t> shape;
    uint64_t begin = 0;          // byte offsets relative to the data section
    uint64_t end = 0;
    at::ScalarType scalar_type;  // what tensor() returns
    bool raw_codes = false;      // true when tensor() returns uint8 codes (F8 dtypes)

    uint64_t nbytes() const { return end - begin; }
    int64_t numel() const;
};

struct byte_span {
    const uint8_t *data = nullptr;
    size_t size = 0;
};

// One .safetensors file, memory-mapped. The file is opened read-only and mapped MAP_PRIVATE
// with copy-on-write pages, so tensors handed out are writable in memory but the file never
// changes. Everything in the header is validated before any of it is used.
class safetensors_file {
  public:
    explicit safetensors_file(const std::string &path);
    ~safetensors_file();
    safetensors_file(const safetensors_file &) = delete;
    safetensors_file &operator=(const safetensors_file &) = delete;

    const std::string &path() const { return path_; }
    // Tensor names in file order (by data offset).
    const std::vector<std::string> &names() const { return names_; }
    bool contains(const std::string &name) const { return index_.count(name) != 0; }
    const safetensors_tensor_info &info(const std::string &name) const;
    byte_span raw(const std::string &name) const;
    // Zero-copy view over the mapping (the mapping lives as long as any tensor from it), its
    // pages mapped in at once; copied only when the data is not aligned to the element size.
    at::Tensor tensor(const std::string &name) const;
    const std::map<std::string, std::string> &metadata() const { return metadata_; }
    // A private copy of the tensor (not a view of the mapping), converted to `dtype`, after which
    // the mapping's pages of that tensor are dropped from this process's memory: reading a model
    // layer by layer then costs one layer of memory, not the file.
    at::Tensor copy_and_drop(const std::string &name, at::ScalarType dtype) const;
    // The same promise without the copy where the file already holds `dtype` (aligned): a view
    // of the mapping whose pages are dropped when its storage is freed. Written elements stay
    // private (copy-on-write) and are undone when it is freed (the bytes on pages it shares with
    // a neighbour are read back from the file), so a later view shows the file again. A tensor
    // must not be viewed this way twice at once: the first one freed would undo the other's.
    at::Tensor view_and_drop(const std::string &name, at::ScalarType dtype) const;
    uint64_t file_size() const;
    uint64_t data_offset() const { return data_offset_; }

  private:
    struct mapping;
    std::string path_;
    std::shared_ptr<mapping> map_;
    uint64_t data_offset_ = 0;
    std::vector<std::string> names_;
    std::unordered_map<std::string, safetensors_tensor_info> index_;
    std::map<std::string, std::string> metadata_;
};

// A Hugging Face model directory: model.safetensors, or shards listed by
// model.safetensors.index.json. Pickle checkpoints are refused.
class safetensors_model {
  public:
    explicit safetensors_model(const std::string &dir);

    const std::string &dir() const { return dir_; }
    bool sharded() const { return sharded_; }
    // All tensor names: shards in index order, each in file order.
    const std::vector<std::string> &names() const { return names_; }
    bool contains(const std::string &name) const { return where_.count(name) != 0; }
    const safetensors_file &file_of(const std::string &name) const;
    const safetensors_tensor_info &info(const std::string &name) const { return file_of(name).info(name); }
    byte_span raw(const std::string &name) const { return file_of(name).raw(name); }
    at::Tensor tensor(const std::string &name) const { return file_of(name).tensor(name); }
    at::Tensor copy_and_drop(const std::string &name, at::ScalarType dtype) const {
        return file_of(name).copy_and_drop(name, dtype);
    }
    at::Tensor view_and_drop(const std::string &name, at::ScalarType dtype) const {
        return file_of(name).view_and_drop(name, dtype);
    }
    const std::vector<std::unique_ptr<safetensors_file>> &files() const { return files_; }
    // The index's "metadata" object (empty when not sharded).
    const std::map<std::string, std::string> &index_metadata() const { return index_metadata_; }

  private:
    void open_index(const std::string &index_path);

    std::string dir_;
    bool sharded_ = false;
    std::vector<std::unique_ptr<safetensors_file>> files_;
    std::vector<std::string> names_;
    std::unordered_map<std::string, const safetensors_file *> where_;
    std::map<std::string, std::string> index_metadata_;
};

// Streams tensors to one .safetensors file. The header must come first but its size is only
// known at the end. With a header reserve, data goes straight into "<path>.partial" after that
// many bytes and finish() writes the header in front, padded with spaces to the reserve (the
// format allows trailing whitespace in the header): each byte is written once. Without one, or
// when the header outgrows it, the data is copied once more behind the header. finish() renames
// the result to <path>. Memory stays bounded by one tensor. Without finish() the destructor
// removes the partial files.
class safetensors_writer {
  public:
    explicit safetensors_writer(std::string path,
                                std::map<std::string, std::string> metadata = {{"format", "pt"}},
                                uint64_t header_reserve = 0);
    ~safetensors_writer();
    safetensors_writer(const safetensors_writer &) = delete;
    safetensors_writer &operator=(const safetensors_writer &) = delete;

    // The dtype comes from the tensor.
    void add(const std::string &name, const at::Tensor &t);
    // Explicit dtype: the tensor's bytes are written as they are (uint8 codes as "F8_E4M3",
    // int16 bits as "BF16"); its element size must match the dtype's.
    void add(const std::string &name, const at::Tensor &t, const std::string &dtype);
    void add_raw(const std::string &name, const std::string &dtype, const std::vector<int64_t> &shape,
                 const void *data, size_t nbytes);
    // add(), except that a tensor whose bytes are still its input file's (io/file_regions.h,
    // 1 MiB or more) gets its place in the data now and is copied from that file later, piece by
    // piece (copy_pending) or at finish(); it is kept alive until then and must not change. So a
    // large copied tensor does not hold up the tensors added after it. True when deferred.
    bool add_deferred(const std::string &name, const at::Tensor &t, const std::string &dtype);
    // Copies up to max_bytes of the deferred tensors' bytes, oldest first; returns what is left.
    uint64_t copy_pending(uint64_t max_bytes);

    size_t count() const { return entries_.size(); }
    uint64_t data_bytes() const { return data_bytes_; }
    const std::string &path() const { return path_; }
    void finish();

  private:
    struct entry {
        std::string name, dtype;
        std::vector<int64_t> shape;
        uint64_t begin, end;
    };
    // A deferred tensor's bytes: from src (an input file) to dst (the data file), `left` to go.
    struct pending_copy {
        std::string name;
        at::Tensor keep; // holds the input file open and its bytes unchanged
        int src_fd;
        uint64_t src, dst, left;
    };
    void abandon();
    bool write_data(const void *data, size_t nbytes);
    void check_add(const std::string &name, const std::string &dtype, const std::vector<int64_t> &shape,
                   size_t nbytes);

    std::string path_;
    std::map<std::string, std::string> metadata_;
    std::vector<entry> entries_;
    std::unordered_map<std::string, size_t> seen_;
    uint64_t data_bytes_ = 0;
    uint64_t reserve_ = 0;     // header bytes reserved in front of the data (multiple of 8)
    std::string data_path_;    // where the data is being written
    uint64_t data_start_ = 0;  // the data's offset in that file
    std::FILE *data_ = nullptr;
    std::deque<pending_copy> pending_;
    std::vector<char> bounce_;      // copy_pending's buffer where copy_file_range fails
    bool copy_range_fails_ = false; // it did once: the files are on different file systems
    uint64_t pending_bytes_ = 0;
    bool finished_ = false;
};

// Writes a model directory the way save_pretrained does: shards of at most max_shard_bytes
// named model-0000i-of-0000N.safetensors plus model.safetensors.index.json, or a single
// model.safetensors (no index) when everything fits in one shard. A tensor larger than the
// limit gets a shard of its own. Shards are renamed to their final names in finish().
class safetensors_sharded_writer {
  public:
    static constexpr uint64_t default_max_shard_bytes = 5000000000ull; // HF's "5GB"

    // header_reserve: per shard, see safetensors_writer (an estimate of the whole header).
    explicit safetensors_sharded_writer(std::string dir, uint64_t max_shard_bytes = default_max_shard_bytes,
                                        std::map<std::string, std::string> metadata = {{"format", "pt"}},
                                        uint64_t header_reserve = 0);
    ~safetensors_sharded_writer();

    void add(const std::string &name, const at::Tensor &t);
    void add(const std::string &name, const at::Tensor &t, const std::string &dtype);
    void add_raw(const std::string &name, const std::string &dtype, const std::vector<int64_t> &shape,
                 const void *data, size_t nbytes);
    // safetensors_writer::add_deferred and copy_pending, on the current shard (a shard's
    // deferred copies are completed when it is closed).
    bool add_deferred(const std::string &name, const at::Tensor &t, const std::string &dtype);
    uint64_t copy_pending(uint64_t max_bytes);
    // Returns the files written (names relative to dir).
    std::vector<std::string> finish();

    uint64_t total_bytes() const { return total_bytes_; }

  private:
    safetensors_writer &shard_for(uint64_t nbytes);
    void close_current();
    void check_name(const std::string &name);

    std::string dir_;
    uint64_t max_shard_bytes_;
    std::map<std::string, std::string> metadata_;
    uint64_t header_reserve_ = 0;
    std::unique_ptr<safetensors_writer> current_;
    std::vector<std::string> shard_tmp_;                       // finished shards' temporary names
    std::vector<std::pair<std::string, size_t>> weight_shard_; // tensor -> shard index
    std::unordered_map<std::string, bool> seen_;
    uint64_t total_bytes_ = 0;
    bool finished_ = false;
};

} // namespace llmc
