// The three dataset formats (plain text, JSONL text, JSONL input_ids) written to temporary files:
// chunking, truncation, num_samples, seeded shuffling, the token stream for perplexity, and every
// error with the line it names. A byte tokenizer stands in for the real one, so the expected ids
// are plain to see: BOS = 1, each byte b is b + 3.
#include "data/dataset.h"
#include "test_support.h"
#include "util/error.h"

#include <set>

using namespace llmc;

namespace {

class byte_tokenizer : public tokenizer {
  public:
    std::vector<int64_t> encode(const std::string &text, bool add_special_tokens) const override {
        std::vector<int64_t> ids;
        if (add_special_tokens) ids.push_back(1);
        for (unsigned char c : text) ids.push_back(c + 3);
        return ids;
    }
    std::string decode(const std::vector<int64_t> &, bool) const override { return {}; }
    std::optional<int64_t> bos_id() const override { return 1; }
    std::optional<int64_t> eos_id() const override { return 2; }
    int64_t vocab_size() const override { return 259; }
    std::optional<std::string> id_to_token(int64_t) const override { return std::nullopt; }
    std::optional<int64_t> token_to_id(const std::string &) const override { return std::nullopt; }
    bool is_special(int64_t id) const override { return id < 3; }
};

constexpr int64_t vocab = 259;

std::vector<int64_t> ids_of(const at::Tensor &t) {
    EXPECT_EQ(t.dim(), 2);
    EXPECT_EQ(t.size(0), 1);
    EXPECT_EQ(t.scalar_type(), at::kLong);
    const at::Tensor c = t.contiguous();
    return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

std::vector<int64_t> bytes(const std::string &s, bool bos = false) { return byte_tokenizer().encode(s, bos); }

struct fixture : ::testing::Test {
    test::temp_dir dir{"dataset"};
    byte_tokenizer tok;
    std::string write(const std::string &name, const std::string &text) {
        const std::string p = dir / name;
        test::write_file(p, text);
        return p;
    }
    dataset_options opts(const std::string &path, int64_t len = 2048, int64_t n = 512) {
        dataset_options o;
        o.path = path;
        o.max_seq_length = len;
        o.num_samples = n;
        return o;
    }
    // The error text of loading `opt`, "" when it loads.
    std::string error_of(const dataset_options &o, const tokenizer *t) {
        try {
            dataset_load(o, vocab, t);
        } catch (const llmc::error &e) {
            return e.what();
        }
        return "";
    }
};

#define EXPECT_ERROR(expr_text, needle) EXPECT_NE(std::string(expr_text).find(needle), std::string::npos) << (expr_text)

// --- plain text ---

TEST_F(fixture, plain_text_is_one_stream_cut_into_chunks_with_bos_once) {
    const auto p = write("a.txt", "abcdefghij"); // 11 tokens with BOS
    auto s = dataset_load(opts(p, 4), vocab, &tok);
    ASSERT_EQ(s.size(), 2u); // the partial chunk "hij" is dropped
    EXPECT_EQ(ids_of(s[0]), (std::vector<int64_t>{1, 'a' + 3, 'b' + 3, 'c' + 3}));
    EXPECT_EQ(ids_of(s[1]), bytes("defg"));
    s = dataset_load(opts(p, 11), vocab, &tok); // exactly one chunk
    ASSERT_EQ(s.size(), 1u);
    EXPECT_EQ(ids_of(s[0]), bytes("abcdefghij", true));
    s = dataset_load(opts(p, 2, 3), vocab, &tok);
    ASSERT_EQ(s.size(), 3u); // num_samples caps
    EXPECT_EQ(ids_of(s[2]), bytes("de"));
}

TEST_F(fixture, plain_text_any_other_extension_or_none) {
    for (const char *name : {"b", "b.md", "b.jsonx", "b.txt.gz.txt"}) {
        const auto p = write(name, "xyz");
        EXPECT_EQ(dataset_detect(p), dataset_format::plain_text) << name;
        EXPECT_EQ(ids_of(dataset_load(opts(p, 4), vocab, &tok)[0]), bytes("xyz", true));
    }
}

TEST_F(fixture, plain_text_shuffle_is_deterministic_and_a_permutation) {
    std::string text;
    for (int i = 0; i < 40; ++i) text += static_cast<char>('A' + i);
    const auto p = write("s.txt", text); // 41 tokens -> 20 chunks of 2
    auto o = opts(p, 2);
    const auto plain = dataset_load(o, vocab, &tok);
    ASSERT_EQ(plain.size(), 20u);
    o.shuffle = true;
    const auto a = dataset_load(o, vocab, &tok), b = dataset_load(o, vocab, &tok);
    o.seed = 7;
    const auto c = dataset_load(o, vocab, &tok);
    ASSERT_EQ(a.size(), 20u);
    std::set<std::vector<int64_t>> all, shuffled;
    bool differs_from_plain = false, differs_by_seed = false;
    for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_EQ(ids_of(a[i]), ids_of(b[i]));
        all.insert(ids_of(plain[i]));
        shuffled.insert(ids_of(a[i]));
        differs_from_plain |= ids_of(a[i]) != ids_of(plain[i]);
        differs_by_seed |= ids_of(a[i]) != ids_of(c[i]);
    }
    EXPECT_EQ(all, shuffled);
    EXPECT_TRUE(differs_from_plain);
    EXPECT_TRUE(differs_by_seed);
    // num_samples keeps the first samples of the shuffled order.
    o.seed = 42;
    o.num_samples = 5;
    const auto d = dataset_load(o, vocab, &tok);
    ASSERT_EQ(d.size(), 5u);
    for (size_t i = 0; i < d.size(); ++i) EXPECT_EQ(ids_of(d[i]), ids_of(a[i]));
}

TEST_F(fixture, plain_text_errors) {
    EXPECT_ERROR(error_of(opts(write("short.txt", "abc"), 5), &tok), "short.txt: 4 tokens, fewer than max_seq_length 5");
    EXPECT_ERROR(error_of(opts(write("empty.txt", "")), &tok), "empty.txt: no text");
    EXPECT_ERROR(error_of(opts(write("blank.txt", " \n\n\t\n")), &tok), "blank.txt: no text");
    EXPECT_ERROR(error_of(opts(write("t.txt", "abc"), 2), nullptr), "t.txt: plain text needs the model's tokenizer");
    EXPECT_ERROR(error_of(opts(dir / "missing.txt"), &tok), "missing.txt: cannot open");
    EXPECT_ERROR(error_of(opts(dir.path()), &tok), "is a directory");
    auto o = opts(write("n.txt", "abc"), 2);
    o.num_samples = 0;
    EXPECT_ERROR(error_of(o, &tok), "num_samples must be at least 1");
    o.num_samples = 1;
    o.max_seq_length = 0;
    EXPECT_ERROR(error_of(o, &tok), "max_seq_length must be at least 1");
    // Ids the model cannot embed: the tokenizer's vocabulary is larger than the model's.
    try {
        dataset_load(opts(write("big.txt", "\xff"), 2), 100, &tok);
        ADD_FAILURE() << "no error";
    } catch (const llmc::error &e) {
        EXPECT_ERROR(e.what(), "big.txt: the tokenizer gave id 258, outside the model's vocabulary [0, 100)");
    }
}

// --- JSONL text ---

TEST_F(fixture, jsonl_text_one_sample_per_row_truncated_blank_rows_skipped) {
    const auto p = write("t.jsonl", "{\"text\": \"abc\"}\n{\"text\": \"\"}\n\n{\"text\": \"  \\n\"}\n"
                                    "{\"text\": \"abcdefgh\", \"other\": 1}\n");
    EXPECT_EQ(dataset_detect(p), dataset_format::jsonl_text);
    auto s = dataset_load(opts(p, 5), vocab, &tok);
    ASSERT_EQ(s.size(), 2u);
    EXPECT_EQ(ids_of(s[0]), bytes("abc", true));
    EXPECT_EQ(ids_of(s[1]), bytes("abcd", true)); // truncated to 5 with the BOS
    s = dataset_load(opts(p, 5, 1), vocab, &tok);
    ASSERT_EQ(s.size(), 1u);
}

TEST_F(fixture, jsonl_text_column_and_json_extension) {
    const auto p = write("c.JSON", "{\"content\": \"hi\", \"text\": 3}\n{\"content\": \"yo\"}\n");
    auto o = opts(p);
    o.text_column = "content";
    EXPECT_EQ(dataset_detect(p, "content"), dataset_format::jsonl_text);
    const auto s = dataset_load(o, vocab, &tok);
    ASSERT_EQ(s.size(), 2u);
    EXPECT_EQ(ids_of(s[1]), bytes("yo", true));
    EXPECT_ERROR(error_of(opts(p), &tok), "c.JSON:1: 'text' must be a string, not number");
}

TEST_F(fixture, jsonl_shuffle_is_deterministic) {
    std::string rows;
    for (int i = 0; i < 30; ++i) rows += "{\"text\": \"row" + std::to_string(i) + "\"}\n";
    rows += "{\"text\": \"\"}\n";
    const auto p = write("sh.jsonl", rows);
    auto o = opts(p);
    o.shuffle = true;
    o.num_samples = 10;
    const auto a = dataset_load(o, vocab, &tok), b = dataset_load(o, vocab, &tok);
    ASSERT_EQ(a.size(), 10u);
    bool in_file_order = true;
    for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_EQ(ids_of(a[i]), ids_of(b[i]));
        in_file_order &= ids_of(a[i]) == bytes("row" + std::to_string(i), true);
    }
    EXPECT_FALSE(in_file_order);
    o.seed = 43;
    const auto c = dataset_load(o, vocab, &tok);
    bool same = true;
    for (size_t i = 0; i < a.size(); ++i) same &= ids_of(a[i]) == ids_of(c[i]);
    EXPECT_FALSE(same);
}

// --- JSONL input_ids ---

TEST_F(fixture, jsonl_ids_as_before_without_a_tokenizer) {
    const auto p = write("ids.jsonl", "{\"input_ids\": [5, 6, 7, 8]}\n\n{\"input_ids\": [9], \"text\": \"ignored\"}\n"
                                      "{\"input_ids\": [1, 2, 3]}\n");
    EXPECT_EQ(dataset_detect(p), dataset_format::jsonl_ids);
    EXPECT_FALSE(dataset_needs_tokenizer(opts(p)));
    auto s = dataset_load_ids(opts(p, 3), vocab);
    ASSERT_EQ(s.size(), 3u);
    EXPECT_EQ(ids_of(s[0]), (std::vector<int64_t>{5, 6, 7}));
    EXPECT_EQ(ids_of(s[1]), (std::vector<int64_t>{9}));
    s = dataset_load(opts(p, 10, 2), vocab, &tok);
    ASSERT_EQ(s.size(), 2u);
    EXPECT_EQ(ids_of(s[0]), (std::vector<int64_t>{5, 6, 7, 8}));
    auto o = opts(p);
    o.shuffle = true;
    o.seed = 1;
    const auto a = dataset_load(o, vocab, nullptr), b = dataset_load(o, vocab, nullptr);
    ASSERT_EQ(a.size(), 3u);
    for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(ids_of(a[i]), ids_of(b[i]));
}

// --- JSONL errors, each with its file:line ---

TEST_F(fixture, jsonl_errors_name_the_line) {
    struct bad {
        const char *name, *text, *needle;
    };
    const bad cases[] = {
        {"m.jsonl", "{\"text\": \"a\"}\n\n{\"text\": \"b\"\n", "m.jsonl:3: malformed JSON at column 13"},
        {"o.jsonl", "{\"input_ids\": [1]}\n[1, 2]\n", "o.jsonl:2: not a JSON object"},
        {"arr.json", "\n[\n {\"text\": \"a\"}\n]\n", "arr.json:2: a JSON array; write one JSON object per line"},
        {"f.jsonl", "{\"input_ids\": [1]}\n{\"text\": \"a\"}\n", "f.jsonl:2: no 'input_ids' (the first row has them)"},
        {"g.jsonl", "{\"text\": \"a\"}\n{\"input\": \"a\"}\n", "g.jsonl:2: no 'text' field (the first row has it)"},
        {"k.jsonl", "\n{\"prompt\": \"a\", \"answer\": \"b\"}\n",
         "k.jsonl:2: neither 'input_ids' nor 'text' in the row (its keys: answer, prompt)"},
        {"n.jsonl", "{\"input_ids\": [1]}\n{\"input_ids\": [1, 2.5]}\n", "n.jsonl:2: 'input_ids' holds a non-integer 2.5"},
        {"r.jsonl", "{\"input_ids\": [1]}\n{\"input_ids\": [259]}\n",
         "r.jsonl:2: token id 259 outside the vocabulary [0, 259)"},
        {"neg.jsonl", "{\"input_ids\": [-1]}\n", "neg.jsonl:1: token id -1 outside the vocabulary"},
        {"e.jsonl", "{\"input_ids\": [1]}\n{\"input_ids\": []}\n", "e.jsonl:2: 'input_ids' must be a non-empty list"},
        {"l.jsonl", "{\"input_ids\": \"1 2\"}\n", "l.jsonl:1: 'input_ids' must be a non-empty list"},
        {"s.jsonl", "{\"text\": \"a\"}\n{\"text\": null}\n", "s.jsonl:2: 'text' must be a string, not null"},
        {"z.jsonl", "", "z.jsonl: no rows (the file is empty)"},
        {"w.jsonl", "\n  \n", "w.jsonl: no rows (the file is empty)"},
        {"x.jsonl", "{\"text\": \"\"}\n{\"text\": \" \"}\n", "x.jsonl: every row's 'text' is empty"},
    };
    for (const auto &c : cases) EXPECT_ERROR(error_of(opts(write(c.name, c.text)), &tok), c.needle);
    EXPECT_ERROR(error_of(opts(write("nt.jsonl", "\n{\"text\": \"a\"}\n")), nullptr),
                 "nt.jsonl:2: rows hold 'text' text, which needs the model's tokenizer");
    EXPECT_ERROR(error_of(opts(dir / "nope.jsonl"), &tok), "nope.jsonl: cannot open");
    try {
        dataset_detect(write("d.jsonl", "{\"a\": 1}\n"));
        ADD_FAILURE() << "no error";
    } catch (const llmc::error &e) {
        EXPECT_ERROR(e.what(), "d.jsonl:1: neither 'input_ids' nor 'text'");
    }
}

TEST_F(fixture, jsonl_streams_rows_so_unread_rows_do_not_matter_without_shuffle) {
    // Without shuffle the first num_samples rows are the samples: reading stops there. Shuffling
    // draws from every row, so the whole file is read and checked.
    const auto p = write("late.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"}\nnot json\n");
    auto o = opts(p, 8, 2);
    EXPECT_EQ(dataset_load(o, vocab, &tok).size(), 2u);
    o.shuffle = true;
    EXPECT_ERROR(error_of(o, &tok), "late.jsonl:3: malformed JSON");
    o.shuffle = false;
    o.num_samples = 3;
    EXPECT_ERROR(error_of(o, &tok), "late.jsonl:3: malformed JSON");
}

// --- the token stream (perplexity) ---

TEST_F(fixture, token_stream_of_each_format) {
    EXPECT_EQ(dataset_token_stream(write("p.txt", "ab\n\ncd"), vocab, &tok), bytes("ab\n\ncd", true));
    // Text rows are joined with "\n\n", blank rows included, then tokenized once (one BOS).
    EXPECT_EQ(dataset_token_stream(write("r.jsonl", "{\"text\": \"ab\"}\n{\"text\": \"\"}\n{\"text\": \"cd\"}\n"), vocab,
                                   &tok),
              bytes("ab\n\n\n\ncd", true));
    EXPECT_EQ(dataset_token_stream(write("i.jsonl", "{\"input_ids\": [1, 2]}\n{\"input_ids\": [3]}\n"), vocab, nullptr),
              (std::vector<int64_t>{1, 2, 3}));
    try {
        dataset_token_stream(write("q.jsonl", "{\"input_ids\": [1]}\n{\"input_ids\": [1, \"x\"]}\n"), vocab, nullptr);
        ADD_FAILURE() << "no error";
    } catch (const llmc::error &e) {
        EXPECT_ERROR(e.what(), "q.jsonl:2: 'input_ids' holds a non-integer \"x\"");
    }
    try {
        dataset_token_stream(write("u.txt", "abc"), vocab, nullptr);
        ADD_FAILURE() << "no error";
    } catch (const llmc::error &e) {
        EXPECT_ERROR(e.what(), "u.txt: plain text needs the model's tokenizer");
    }
}

} // namespace

// --- with the real stories260K tokenizer (skipped without the shared data) ---

namespace {

TEST(dataset_real_tokenizer, tinystories_chunks_and_wikitext_rows) {
    LLMC_REQUIRE_SHARED();
    dataset_options o;
    o.path = test::shared_dir() + "/data/tinystories_valid_head.txt";
    o.max_seq_length = 256;
    o.num_samples = 4;
    ASSERT_TRUE(dataset_needs_tokenizer(o));
    auto s = dataset_load_for_model(o, 512, test::stories_dir());
    ASSERT_EQ(s.size(), 4u);
    EXPECT_EQ(s[0][0][0].item<int64_t>(), 1); // BOS once, at the start of the stream
    for (size_t i = 1; i < s.size(); ++i) EXPECT_NE(s[i][0][0].item<int64_t>(), 1);
    for (const auto &t : s) EXPECT_EQ(t.size(1), 256);
    EXPECT_TRUE(at::equal(s[1], at::tensor(dataset_token_stream(o.path, 512, tokenizer::load(test::stories_dir()).get()),
                                           at::kLong).slice(0, 256, 512).unsqueeze(0)));

    // wikitext rows: one sample per row with text (blank rows skipped), each starting with BOS.
    o.path = test::shared_dir() + "/data/wikitext-2-raw-v1.test.rows.jsonl";
    o.num_samples = 3;
    o.max_seq_length = 32;
    s = dataset_load_for_model(o, 512, test::stories_dir());
    ASSERT_EQ(s.size(), 3u);
    for (const auto &t : s) {
        EXPECT_EQ(t[0][0].item<int64_t>(), 1);
        EXPECT_LE(t.size(1), 32);
    }
}

} // namespace
