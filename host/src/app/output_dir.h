// The output checkpoint is written into a staging directory next to the target and renamed into
// place only when complete: an interrupted or failed run never leaves a partial checkpoint there.
#pragma once

#include <string>

namespace llmc {

class output_dir {
  public:
    // Refuses an existing non-empty target unless overwrite is set.
    output_dir(const std::string &target, bool overwrite);
    ~output_dir(); // removes the staging directory unless committed
    output_dir(const output_dir &) = delete;
    output_dir &operator=(const output_dir &) = delete;

    const std::string &staging() const { return staging_; }
    // Copies tokenizer and generation files from the source model directory.
    void copy_side_files(const std::string &model_dir) const;
    // Atomically replaces the target with the staging directory.
    void commit();

  private:
    std::string target_, staging_;
    bool overwrite_, committed_ = false;
};

} // namespace llmc
