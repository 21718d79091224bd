// llama-loglik: scores text with llama.cpp itself, for the eval step's GGUF models.
//
// lm-eval's own `gguf` model asks llama-server for echo=true logprobs of the prompt, which this
// llama-server refuses; this tool loads a GGUF once (llama.h, the same static libraries llama-server is
// built from) and answers JSON-lines requests on stdin, one JSON line on stdout each:
//
//   {"op":"info"}              -> {"n_ctx", "n_ctx_train", "n_vocab", "bos", "eos", "add_bos", "bos_text"}
//   {"op":"tokenize","text":S,"add_special":B}      -> {"tokens":[...]}   (the GGUF's own tokenizer; special
//                                                      tokens written in the text are parsed, as HF tokenizers do)
//   {"op":"detokenize","tokens":[ids]}              -> {"text":S}
//   {"op":"loglik","context":[ids],"continuation":[ids]}
//                                                   -> {"logprob": sum of log p(continuation | context),
//                                                       "greedy": every continuation token is the argmax,
//                                                       "logprobs": [per continuation token]}
//   {"op":"generate","tokens":[ids],"max_tokens":N,"until":[S...]}
//                                                   -> {"text": greedy continuation, cut at the first stop string}
//   {"op":"perplexity","text":S,"ctx":N}            -> {"ppl", "ppl_error", "chunks", "count", "tokens"}
//                                                      llama-perplexity's measure with windows of N tokens
//                                                      (at most --ctx; run with --batch N for its exact figure)
//
// A bad request gets {"error": "..."} and the tool goes on; a GGUF that does not load ends it with one
// line on stderr and exit 1. Consecutive requests that share a token prefix (the choices of one
// multiple-choice question) reuse the prefix's KV cache instead of recomputing it.
//
// Usage: llama-loglik MODEL.gguf [--ctx N] [--threads N] [--batch N]
// Built by engine/components/llama-cpp.ts (`anneal setup --with llama-cpp`) against the llama.cpp build.
#include "llama.h"
#include "nlohmann/json.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

using json = nlohmann::json;

// llama.cpp's error lines: the first names the cause (e.g. "gguf_init_from_reader: failed to read
// header"), the ones after it the callers that gave up
static std::string first_error, last_error;

static void log_callback(enum ggml_log_level level, const char * text, void *) {
    if (level == GGML_LOG_LEVEL_ERROR) {
        std::string line(text);
        while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
        if (line.empty()) return;
        if (first_error.empty()) first_error = line;
        last_error = line;
    }
}

struct Scorer {
    llama_model * model = nullptr;
    llama_context * ctx = nullptr;
    const llama_vocab * vocab = nullptr;
    int n_vocab = 0;
    int n_ctx = 0;
    int n_batch = 0;
    std::vector<llama_token> cached;  // the tokens whose KV entries are in sequence 0, positions 0..

    // Decodes `tokens` so that the KV cache holds exactly them, reusing the cached prefix; the logits of
    // positions >= `first_logit` (and of the last position) are kept, returned by position.
    std::vector<std::vector<float>> decode(const std::vector<llama_token> & tokens, size_t first_logit) {
        size_t common = 0;
        while (common < cached.size() && common < tokens.size() && cached[common] == tokens[common]) common++;
        size_t start = std::min(common, first_logit);
        if (start == tokens.size() && start > 0) start--;  // something must be decoded to get logits
        llama_memory_t mem = llama_get_memory(ctx);
        if (!llama_memory_seq_rm(mem, 0, (llama_pos) start, -1)) {
            llama_memory_clear(mem, true);
            start = 0;
        }
        cached.resize(start);
        std::vector<std::vector<float>> out;
        llama_batch batch = llama_batch_init(n_batch, 0, 1);
        for (size_t i = start; i < tokens.size(); i += n_batch) {
            size_t end = std::min(tokens.size(), i + (size_t) n_batch);
            batch.n_tokens = 0;
            for (size_t p = i; p < end; p++) {
                int k = batch.n_tokens++;
                batch.token[k] = tokens[p];
                batch.pos[k] = (llama_pos) p;
                batch.n_seq_id[k] = 1;
                batch.seq_id[k][0] = 0;
                batch.logits[k] = (p >= first_logit || p + 1 == tokens.size()) ? 1 : 0;
            }
            int rc = llama_decode(ctx, batch);
            if (rc != 0) {
                llama_batch_free(batch);
                llama_memory_clear(mem, true);
                cached.clear();
                throw std::runtime_error("llama_decode failed (" + std::to_string(rc) + ")" +
                                         (last_error.empty() ? "" : ": " + last_error));
            }
            for (size_t p = i; p < end; p++) {
                if (p >= first_logit || p + 1 == tokens.size()) {
                    const float * l = llama_get_logits_ith(ctx, (int32_t) (p - i));
                    out.emplace_back(l, l + n_vocab);
                }
            }
            cached.insert(cached.end(), tokens.begin() + i, tokens.begin() + end);
        }
        llama_batch_free(batch);
        return out;
    }

    static double log_softmax_at(const std::vector<float> & logits, int token, bool * is_max) {
        float max = -INFINITY;
        int arg = 0;
        for (size_t v = 0; v < logits.size(); v++) {
            if (logits[v] > max) { max = logits[v]; arg = (int) v; }
        }
        double sum = 0;
        for (float x : logits) sum += std::exp((double) x - max);
        if (is_max) *is_max = logits[token] >= max && (arg == token || logits[arg] == logits[token]);
        return (double) logits[token] - max - std::log(sum);
    }

    std::vector<llama_token> ids(const json & j, const char * name) const {
        if (!j.contains(name) || !j[name].is_array()) throw std::runtime_error(std::string("\"") + name + "\" must be an array of token ids");
        std::vector<llama_token> out;
        for (const auto & t : j[name]) {
            if (!t.is_number_integer() || t.get<long long>() < 0 || t.get<long long>() >= n_vocab)
                throw std::runtime_error(std::string("\"") + name + "\" holds a token id outside the vocabulary (0.." + std::to_string(n_vocab - 1) + ")");
            out.push_back((llama_token) t.get<long long>());
        }
        return out;
    }

    json loglik(const json & req) {
        std::vector<llama_token> context = ids(req, "context"), continuation = ids(req, "continuation");
        if (context.empty()) throw std::runtime_error("\"context\" is empty (give at least a BOS or prefix token)");
        if (continuation.empty()) throw std::runtime_error("\"continuation\" is empty");
        std::vector<llama_token> all(context);
        all.insert(all.end(), continuation.begin(), continuation.end());
        all.pop_back();  // the last token is only predicted
        if ((int) all.size() > n_ctx)
            throw std::runtime_error("context + continuation is " + std::to_string(all.size() + 1) + " tokens, over the context size " + std::to_string(n_ctx));
        auto logits = decode(all, context.size() - 1);
        double total = 0;
        bool greedy = true;
        json per = json::array();
        for (size_t i = 0; i < continuation.size(); i++) {
            bool is_max = false;
            double lp = log_softmax_at(logits[i], continuation[i], &is_max);
            total += lp;
            greedy = greedy && is_max;
            per.push_back(lp);
        }
        return {{"logprob", total}, {"greedy", greedy}, {"logprobs", per}};
    }

    std::vector<llama_token> tokens_of(const std::string & text, bool add_special, bool parse_special) const {
        std::vector<llama_token> out(text.size() + 8);
        int n = llama_tokenize(vocab, text.c_str(), (int32_t) text.size(), out.data(), (int32_t) out.size(), add_special, parse_special);
        if (n < 0) {
            out.resize((size_t) -n);
            n = llama_tokenize(vocab, text.c_str(), (int32_t) text.size(), out.data(), (int32_t) out.size(), add_special, parse_special);
        }
        if (n < 0) throw std::runtime_error("tokenization failed");
        out.resize((size_t) n);
        return out;
    }

    // llama-perplexity's measure (tools/perplexity, without --ppl-stride): the text as one token stream
    // (BOS first when the vocabulary adds one, special tokens in the text not parsed), cut into chunks of
    // n_ctx tokens, each decoded on its own with its first token replaced by BOS and scored on its second
    // half. Answered here rather than read from llama-perplexity's log: that tool's logger is a thread
    // whose queue is not drained at exit, and its last lines (the final estimate) are sometimes lost.
    json perplexity(const json & req) {
        if (!req.contains("text") || !req["text"].is_string()) throw std::runtime_error("\"text\" must be a string");
        const std::vector<llama_token> tokens = tokens_of(req["text"].get<std::string>(), true, false);
        const int n = (int) tokens.size();
        // the window as asked, not llama_n_ctx: llama.cpp rounds a context up (to 256 tokens)
        const int window = req.value("ctx", n_ctx);
        if (window < 4 || window > n_ctx)
            throw std::runtime_error("\"ctx\" must be between 4 and the loaded context size " + std::to_string(n_ctx));
        if (n < 2 * window)
            throw std::runtime_error("the text is " + std::to_string(n) + " tokens; perplexity with a context of " +
                                     std::to_string(window) + " needs at least " + std::to_string(2 * window));
        const bool add_bos = llama_vocab_get_add_bos(vocab);
        const int n_chunk = n / window, first = window / 2;
        double nll = 0, nll2 = 0;
        long count = 0;
        for (int c = 0; c < n_chunk; c++) {
            std::vector<llama_token> chunk(tokens.begin() + (size_t) c * window, tokens.begin() + (size_t) (c + 1) * window);
            if (add_bos) chunk[0] = llama_vocab_bos(vocab);
            llama_memory_clear(llama_get_memory(ctx), true);  // each chunk alone, as llama-perplexity decodes it
            cached.clear();
            auto logits = decode(chunk, (size_t) first);
            for (int j = 0; j + 1 < window - first; j++) {
                double lp = log_softmax_at(logits[(size_t) j], chunk[(size_t) (first + j + 1)], nullptr);
                nll -= lp;
                nll2 += lp * lp;
                count++;
            }
        }
        nll /= (double) count;
        nll2 = nll2 / (double) count - nll * nll;
        const double ppl = std::exp(nll);
        const double err = nll2 > 0 && count > 1 ? std::sqrt(nll2 / (double) (count - 1)) * ppl : 0.0;
        return {{"ppl", ppl}, {"ppl_error", err}, {"chunks", n_chunk}, {"count", count}, {"tokens", n}};
    }

    std::string piece(llama_token t, bool special = false) const {
        char buf[256];
        int n = llama_token_to_piece(vocab, t, buf, sizeof buf, 0, special);
        if (n < 0) {
            std::string big((size_t) -n, '\0');
            n = llama_token_to_piece(vocab, t, big.data(), (int32_t) big.size(), 0, special);
            return big.substr(0, (size_t) std::max(n, 0));
        }
        return std::string(buf, (size_t) n);
    }

    json generate(const json & req) {
        std::vector<llama_token> tokens = ids(req, "tokens");
        if (tokens.empty()) throw std::runtime_error("\"tokens\" is empty");
        int max_tokens = req.value("max_tokens", 256);
        std::vector<std::string> until;
        if (req.contains("until")) for (const auto & s : req["until"]) if (s.is_string() && !s.get<std::string>().empty()) until.push_back(s.get<std::string>());
        std::string text;
        for (int n = 0; n < max_tokens && (int) tokens.size() < n_ctx; n++) {
            auto logits = decode(tokens, tokens.size() - 1);
            const auto & last = logits.back();
            llama_token next = (llama_token) (std::max_element(last.begin(), last.end()) - last.begin());
            if (llama_vocab_is_eog(vocab, next)) break;
            tokens.push_back(next);
            text += piece(next);
            size_t cut = std::string::npos;
            for (const auto & s : until) cut = std::min(cut, text.find(s));
            if (cut != std::string::npos) { text.resize(cut); break; }
        }
        return {{"text", text}};
    }

    json tokenize(const json & req) {
        if (!req.contains("text") || !req["text"].is_string()) throw std::runtime_error("\"text\" must be a string");
        return {{"tokens", tokens_of(req["text"].get<std::string>(), req.value("add_special", true), true)}};
    }

    json detokenize(const json & req) const {
        std::vector<llama_token> tokens = ids(req, "tokens");
        std::string text(tokens.size() * 8 + 16, '\0');
        int n = llama_detokenize(vocab, tokens.data(), (int32_t) tokens.size(), text.data(), (int32_t) text.size(), false, true);
        if (n < 0) {
            text.resize((size_t) -n);
            n = llama_detokenize(vocab, tokens.data(), (int32_t) tokens.size(), text.data(), (int32_t) text.size(), false, true);
        }
        if (n < 0) throw std::runtime_error("detokenization failed");
        text.resize((size_t) n);
        return {{"text", text}};
    }

    json info() const {
        return {{"n_ctx", n_ctx}, {"n_ctx_train", llama_model_n_ctx_train(model)}, {"n_vocab", n_vocab},
                {"bos", llama_vocab_bos(vocab)}, {"eos", llama_vocab_eos(vocab)}, {"add_bos", llama_vocab_get_add_bos(vocab)},
                {"bos_text", llama_vocab_bos(vocab) >= 0 ? piece(llama_vocab_bos(vocab), true) : ""}};
    }
};

int main(int argc, char ** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: llama-loglik MODEL.gguf [--ctx N] [--threads N] [--batch N]\n");
        return 2;
    }
    const char * path = argv[1];
    int want_ctx = 0, threads = 0, want_batch = 512;
    for (int i = 2; i + 1 < argc; i += 2) {
        std::string flag = argv[i];
        int value = std::atoi(argv[i + 1]);
        if (flag == "--ctx") want_ctx = value;
        else if (flag == "--threads") threads = value;
        else if (flag == "--batch") want_batch = value;
        else {
            std::fprintf(stderr, "llama-loglik: unknown option %s\n", flag.c_str());
            return 2;
        }
    }
    llama_log_set(log_callback, nullptr);
    llama_backend_init();
    Scorer s;
    llama_model_params mp = llama_model_default_params();
    s.model = llama_model_load_from_file(path, mp);
    if (s.model == nullptr) {
        std::fprintf(stderr, "llama-loglik: %s\n", first_error.empty() ? "not a GGUF model llama.cpp can load" : first_error.c_str());
        return 1;
    }
    s.vocab = llama_model_get_vocab(s.model);
    s.n_vocab = llama_vocab_n_tokens(s.vocab);
    int n_ctx = want_ctx > 0 ? want_ctx : std::min(llama_model_n_ctx_train(s.model), 4096);
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t) n_ctx;
    cp.n_batch = cp.n_ubatch = (uint32_t) std::min(want_batch, n_ctx);
    cp.n_seq_max = 1;
    cp.no_perf = true;
    if (threads > 0) cp.n_threads = cp.n_threads_batch = threads;
    s.ctx = llama_init_from_model(s.model, cp);
    if (s.ctx == nullptr) {
        std::fprintf(stderr, "llama-loglik: cannot create a context of %d tokens%s%s\n", n_ctx,
                     first_error.empty() ? "" : ": ", first_error.c_str());
        return 1;
    }
    s.n_ctx = (int) llama_n_ctx(s.ctx);
    s.n_batch = (int) llama_n_batch(s.ctx);

    std::string line;
    while (std::getline(std::cin, line)) {
        if (line.empty()) continue;
        json reply;
        try {
            json req = json::parse(line);
            std::string op = req.value("op", "");
            if (op == "loglik") reply = s.loglik(req);
            else if (op == "generate") reply = s.generate(req);
            else if (op == "tokenize") reply = s.tokenize(req);
            else if (op == "detokenize") reply = s.detokenize(req);
            else if (op == "info") reply = s.info();
            else if (op == "perplexity") reply = s.perplexity(req);
            else reply = {{"error", "unknown op \"" + op + "\" (loglik, generate, tokenize, detokenize, perplexity, info)"}};
        } catch (const std::exception & e) {
            reply = {{"error", e.what()}};
        }
        std::cout << reply.dump(-1, ' ', false, json::error_handler_t::replace) << "\n" << std::flush;
    }
    llama_free(s.ctx);
    llama_model_free(s.model);
    llama_backend_free();
    return 0;
}
