// Beam-search kernels: the vocabulary-wide part of a step on the GPU, so only k candidates per row
// cross to the host (edge_caption/decoding/beam_reference.py explains why per-row top-k is exact).
//
//   ec_logsoftmax_topk   log-softmax + the history-dependent processors (repetition penalty, n-gram
//                        blocking, EOS ban before min_new_tokens) + beam score + per-row top-k, fused
//   ec_merge_candidates  per image, the top-K of its beams' candidates in flat-index order
//   ec_gather_rows       cache rows gathered by source row (beam search's reorder)
//
// A plain C ABI on device pointers and a cudaStream_t, loaded with ctypes (edge_caption/decoding/
// kernels.py); cudart is linked statically, so a machine needs the NVIDIA driver and nothing else.
// No torch anywhere. Orders are (value descending, index ascending), the reference's tie rule.
// Every entry point returns a cudaError_t (0 = success); ec_error_string() names it.
#include <cuda_runtime.h>
#include <math_constants.h>
#include <stdint.h>

#define EC_API extern "C" __attribute__((visibility("default")))

namespace {

constexpr int kThreads = 256;       // one block per row; 50,257 / 256 = ~197 elements per thread
constexpr int kMaxK = 64;           // candidates per row: max(2, 1 + n_eos) * num_beams
constexpr int kWarps = kThreads / 32;

__device__ __forceinline__ bool better(float a, int64_t ia, float b, int64_t ib) {
    return a > b || (a == b && ia < ib);
}

// Block-wide max and sum; every thread gets the result.
__device__ float block_max(float v, float* shared) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = v;
    __syncthreads();
    v = threadIdx.x < kWarps ? shared[threadIdx.x] : -CUDART_INF_F;
    if (threadIdx.x < 32)
        for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (threadIdx.x == 0) shared[0] = v;
    __syncthreads();
    v = shared[0];
    __syncthreads();
    return v;
}

__device__ float block_sum(float v, float* shared) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = v;
    __syncthreads();
    v = threadIdx.x < kWarps ? shared[threadIdx.x] : 0.0f;
    if (threadIdx.x < 32)
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (threadIdx.x == 0) shared[0] = v;
    __syncthreads();
    v = shared[0];
    __syncthreads();
    return v;
}

// A thread's own top-k, best first; it scans ascending indices, so a strict > keeps the lower index.
struct LocalTop {
    float v[kMaxK];
    int64_t i[kMaxK];
    int filled;
    float kth;      // v[k - 1] once full, in a register: most values fail this one test

    __device__ void offer(float value, int64_t index, int k) {
        int p;
        if (filled == k) {
            if (!(value > kth)) return;
            p = k - 1;
        } else {
            p = filled++;
        }
        while (p > 0 && v[p - 1] < value) {
            v[p] = v[p - 1];
            i[p] = i[p - 1];
            --p;
        }
        v[p] = value;
        i[p] = index;
        if (filled == k) kth = v[k - 1];
    }
};

// k rounds of a block-wide arg-best over every thread's next candidate.
__device__ void block_merge(LocalTop& mine, int k, float* out_v, int64_t* out_i, float* sv, int64_t* si) {
    int head = 0;
    for (int r = 0; r < k; ++r) {
        float v = head < mine.filled ? mine.v[head] : -CUDART_INF_F;
        int64_t i = head < mine.filled ? mine.i[head] : INT64_MAX;
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, v, o);
            int64_t oi = __shfl_xor_sync(0xffffffffu, i, o);
            if (better(ov, oi, v, i)) { v = ov; i = oi; }
        }
        if ((threadIdx.x & 31) == 0) { sv[threadIdx.x >> 5] = v; si[threadIdx.x >> 5] = i; }
        __syncthreads();
        if (threadIdx.x < 32) {
            v = threadIdx.x < kWarps ? sv[threadIdx.x] : -CUDART_INF_F;
            i = threadIdx.x < kWarps ? si[threadIdx.x] : INT64_MAX;
            for (int o = 16; o > 0; o >>= 1) {
                float ov = __shfl_xor_sync(0xffffffffu, v, o);
                int64_t oi = __shfl_xor_sync(0xffffffffu, i, o);
                if (better(ov, oi, v, i)) { v = ov; i = oi; }
            }
            if (threadIdx.x == 0) { sv[0] = v; si[0] = i; out_v[r] = v; out_i[r] = i; }
        }
        __syncthreads();
        if (head < mine.filled && mine.i[head] == si[0]) ++head;   // indices are unique: one winner
        __syncthreads();
    }
}

struct Processors {
    const int64_t* history;     // [rows, stride], the first `length` tokens of each row
    int length, stride;
    float repetition_penalty;   // 1: off
    int ngram;                  // 0: off
    const int64_t* eos;
    int n_eos, ban_eos;
    __host__ __device__ bool any() const {
        return history && length > 0 && (repetition_penalty != 1.0f || ngram > 0) || (ban_eos && n_eos > 0);
    }
};

// The processors on one row of log-probs in global memory, in generate()'s order, each phase
// finished by the whole block before the next starts (a token may be penalised, then banned).
__device__ void apply_processors(float* row, int vocab, const Processors& p, int r) {
    const int64_t* h = p.history ? p.history + (int64_t)r * p.stride : nullptr;
    if (h && p.length > 0 && p.repetition_penalty != 1.0f) {
        for (int t = threadIdx.x; t < p.length; t += blockDim.x) {
            int64_t tok = h[t];
            bool first = tok >= 0 && tok < vocab;
            for (int u = 0; first && u < t; ++u) first = h[u] != tok;
            if (first) {    // one writer per distinct id: penalised once, as Hugging Face's gather/scatter
                float s = row[tok];
                row[tok] = s < 0.0f ? s * p.repetition_penalty : s / p.repetition_penalty;
            }
        }
        __syncthreads();
    }
    if (h && p.ngram > 0 && p.length >= p.ngram) {
        const int n = p.ngram;
        for (int s = threadIdx.x; s <= p.length - n; s += blockDim.x) {
            int m = 0;
            while (m < n - 1 && h[s + m] == h[p.length - n + 1 + m]) ++m;
            int64_t tok = h[s + n - 1];
            if (m == n - 1 && tok >= 0 && tok < vocab) row[tok] = -CUDART_INF_F;
        }
        __syncthreads();
    }
    if (p.ban_eos) {
        for (int e = threadIdx.x; e < p.n_eos; e += blockDim.x)
            if (p.eos[e] >= 0 && p.eos[e] < vocab) row[p.eos[e]] = -CUDART_INF_F;
        __syncthreads();
    }
}

__global__ void __launch_bounds__(kThreads) logsoftmax_topk_kernel(
        const float* logits, float* logprobs, int vocab, Processors proc,   // logprobs may be logits
        const float* __restrict__ add, int k, float* out_v, int64_t* out_i) {
    __shared__ float reduce[kWarps];
    __shared__ float sv[kWarps];
    __shared__ int64_t si[kWarps];
    const int r = blockIdx.x;
    const float* x = logits + (int64_t)r * vocab;

    float m = -CUDART_INF_F;
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) m = fmaxf(m, x[j]);
    m = block_max(m, reduce);
    float s = 0.0f;
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) s += expf(x[j] - m);
    // numpy's order: shifted = x - max, then shifted - log(sum(exp(shifted)))
    const float lse = logf(block_sum(s, reduce));
    const float beam = add ? add[r] : 0.0f;

    LocalTop mine;
    mine.filled = 0;
    mine.kth = -CUDART_INF_F;
    if (logprobs) {             // materialise the row: the processors and the caller need it
        float* row = logprobs + (int64_t)r * vocab;
        for (int j = threadIdx.x; j < vocab; j += blockDim.x) row[j] = (x[j] - m) - lse;
        __syncthreads();
        if (proc.any()) apply_processors(row, vocab, proc, r);
        for (int j = threadIdx.x; j < vocab; j += blockDim.x) mine.offer(row[j] + beam, j, k);
    } else {
        for (int j = threadIdx.x; j < vocab; j += blockDim.x) mine.offer(((x[j] - m) - lse) + beam, j, k);
    }
    block_merge(mine, k, out_v + (int64_t)r * k, out_i + (int64_t)r * k, sv, si);
}

// One thread per image: the heads of its beams' sorted candidate lists, merged in flat-index order.
__global__ void merge_kernel(const float* __restrict__ values, const int64_t* __restrict__ tokens, int batch,
                             int beams, int kc, int k, float* out_v, int64_t* out_beam, int64_t* out_tok) {
    const int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= batch) return;
    const float* v = values + (int64_t)b * beams * kc;
    const int64_t* t = tokens + (int64_t)b * beams * kc;
    int heads[256];
    for (int j = 0; j < beams; ++j) heads[j] = 0;
    for (int r = 0; r < k; ++r) {
        int best = -1;
        for (int j = 0; j < beams; ++j)
            if (heads[j] < kc && (best < 0 || v[j * kc + heads[j]] > v[best * kc + heads[best]])) best = j;
        out_v[(int64_t)b * k + r] = v[best * kc + heads[best]];
        out_tok[(int64_t)b * k + r] = t[best * kc + heads[best]];
        out_beam[(int64_t)b * k + r] = best;
        ++heads[best];
    }
}

template <typename T>
__global__ void gather_kernel(const T* __restrict__ src, T* __restrict__ dst, const int64_t* __restrict__ rows,
                              int n_rows, int64_t row_elems) {
    const int64_t total = (int64_t)n_rows * row_elems;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = e / row_elems, c = e - r * row_elems;
        dst[e] = src[rows[r] * row_elems + c];
    }
}

}  // namespace

EC_API int ec_version(void) { return 1; }

EC_API const char* ec_error_string(int code) { return cudaGetErrorString((cudaError_t)code); }

EC_API int ec_device_count(int* count) { return (int)cudaGetDeviceCount(count); }

EC_API int ec_malloc(void** ptr, size_t bytes) { return (int)cudaMalloc(ptr, bytes); }

EC_API int ec_free(void* ptr) { return (int)cudaFree(ptr); }

// kind: 1 host to device, 2 device to host, 3 device to device (cudaMemcpyKind)
EC_API int ec_memcpy(void* dst, const void* src, size_t bytes, int kind) {
    return (int)cudaMemcpy(dst, src, bytes, (cudaMemcpyKind)kind);
}

EC_API int ec_synchronize(void) { return (int)cudaDeviceSynchronize(); }

// Per row r of logits [rows, vocab]: log-softmax, the processors (when history is given or ban_eos),
// + add[r] (add may be NULL), and the k best (value, token) best first, into out_values/out_indices
// [rows, k]. logprobs [rows, vocab] (may be NULL unless processors run; may equal logits, in place)
// receives the processed log-probs before the add. history [rows, stride] holds each row's tokens
// so far (prompt included), the first `length` of them.
EC_API int ec_logsoftmax_topk(const float* logits, float* logprobs, int rows, int vocab, const int64_t* history,
                              int length, int stride, float repetition_penalty, int no_repeat_ngram_size,
                              const int64_t* eos_ids, int n_eos, int ban_eos, const float* add, int k,
                              float* out_values, int64_t* out_indices, cudaStream_t stream) {
    if (rows <= 0 || vocab <= 0 || k <= 0 || k > kMaxK || k > vocab) return (int)cudaErrorInvalidValue;
    Processors proc{history, length, stride, repetition_penalty, no_repeat_ngram_size, eos_ids, n_eos, ban_eos};
    if (proc.any() && logprobs == nullptr) return (int)cudaErrorInvalidValue;
    logsoftmax_topk_kernel<<<rows, kThreads, 0, stream>>>(logits, logprobs, vocab, proc, add, k, out_values,
                                                            out_indices);
    return (int)cudaGetLastError();
}

// values/tokens [batch, beams, kc], each row sorted best first (as ec_logsoftmax_topk writes them);
// out [batch, k]: the k best per image, ordered by value then flat index beam * vocab + token.
EC_API int ec_merge_candidates(const float* values, const int64_t* tokens, int batch, int beams, int kc, int k,
                               float* out_values, int64_t* out_beams, int64_t* out_tokens, cudaStream_t stream) {
    if (batch <= 0 || beams <= 0 || beams > 256 || kc <= 0 || k <= 0 || k > beams * kc)
        return (int)cudaErrorInvalidValue;
    merge_kernel<<<(batch + 63) / 64, 64, 0, stream>>>(values, tokens, batch, beams, kc, k, out_values, out_beams,
                                                       out_tokens);
    return (int)cudaGetLastError();
}

// dst[r] = src[rows[r]] for n_rows rows of row_bytes bytes; src and dst must not overlap.
EC_API int ec_gather_rows(const void* src, void* dst, const int64_t* rows, int n_rows, size_t row_bytes,
                          cudaStream_t stream) {
    if (n_rows <= 0 || row_bytes == 0) return (int)cudaSuccess;
    const uintptr_t align = (uintptr_t)src | (uintptr_t)dst | (uintptr_t)row_bytes;
    const int unit = align % 16 == 0 ? 16 : (align % 4 == 0 ? 4 : 1);
    const int64_t units = (int64_t)n_rows * (int64_t)(row_bytes / unit);
    const int blocks = (int)(units / 256 + 1 < 4096 ? units / 256 + 1 : 4096);
    if (unit == 16)
        gather_kernel<uint4><<<blocks, 256, 0, stream>>>((const uint4*)src, (uint4*)dst, rows, n_rows, row_bytes / 16);
    else if (unit == 4)
        gather_kernel<uint32_t><<<blocks, 256, 0, stream>>>((const uint32_t*)src, (uint32_t*)dst, rows, n_rows,
                                                            row_bytes / 4);
    else
        gather_kernel<uint8_t><<<blocks, 256, 0, stream>>>((const uint8_t*)src, (uint8_t*)dst, rows, n_rows, row_bytes);
    return (int)cudaGetLastError();
}
