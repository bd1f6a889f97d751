// Host stand-ins for the CUDA built-ins l1_heads.cu uses, so its kernels and launchers compile with g++ and run on
// the CPU (harness.cpp, test_l1_cuda_emulated.py): each block runs as 256 std::threads with a std::barrier for
// __syncthreads, blocks one after another, so __shared__ becomes a static. Tests only: slow, but the same source.
#pragma once

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) float2 {
    float x, y;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
struct __nv_bfloat16 {
    unsigned short bits;
};
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }

inline thread_local dim3 threadIdx, blockIdx;
inline std::barrier<>* emulate_barrier = nullptr;
inline float emulate_exchange[256];
inline std::mutex emulate_atomic_lock;

inline void __syncthreads() { emulate_barrier->arrive_and_wait(); }
inline std::atomic<int> emulate_vote{0};
inline int __syncthreads_or(int predicate) {
    if (threadIdx.x == 0) emulate_vote = 0;
    __syncthreads();
    if (predicate) emulate_vote = 1;
    __syncthreads();
    const int any = emulate_vote;
    __syncthreads();  // every thread has read it before the next call resets it
    return any;
}
// Every thread of the block calls the shuffles at the same points in l1_heads.cu, so a block barrier serves.
inline float __shfl_xor_sync(unsigned, float v, int lane_mask) {
    emulate_exchange[threadIdx.x] = v;
    __syncthreads();
    const float other = emulate_exchange[threadIdx.x ^ lane_mask];
    __syncthreads();
    return other;
}
inline float atomicAdd(float* p, float v) {
    const std::lock_guard<std::mutex> guard(emulate_atomic_lock);
    const float old = *p;
    *p = old + v;
    return old;
}
inline float4 atomicAdd(float4* p, float4 v) {
    const std::lock_guard<std::mutex> guard(emulate_atomic_lock);
    const float4 old = *p;
    *p = {old.x + v.x, old.y + v.y, old.z + v.z, old.w + v.w};
    return old;
}
template <typename T>
inline T __ldg(const T* p) { return *p; }
inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }  // NaN -> 0
inline float __uint_as_float(unsigned u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline int __float_as_int(float f) {
    int i;
    std::memcpy(&i, &f, 4);
    return i;
}
inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}
inline int min(int a, int b) { return a < b ? a : b; }

using cudaError_t = int;
using cudaStream_t = void*;
constexpr cudaError_t cudaSuccess = 0;
constexpr cudaError_t cudaErrorInvalidValue = 1;
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount, cudaDevAttrMaxSharedMemoryPerBlockOptin };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
template <typename K>
inline cudaError_t cudaFuncSetAttribute(K, cudaFuncAttribute, int) { return cudaSuccess; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaGetDevice(int* device) { return *device = 0, cudaSuccess; }
// Two "SMs" of one block each: small grids then still split their work (the split paths run); an H100's shared
// memory per block (harness.cpp's emu_set_smem_per_block tries another); launches with dynamic shared memory are
// counted (the fused backward sweep).
inline int emulate_smem_per_block = 227 * 1024;
inline int emulate_smem_launches = 0;
inline int emulate_smooth_fallbacks = 0;  // chebyshev_smooth tiles computed in two sweeps (L1_COUNT)
inline int emulate_canberra_fallbacks = 0;  // canberra tiles with one rcp per feature (L1_COUNT)
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int) {
    *value = attr == cudaDevAttrMaxSharedMemoryPerBlockOptin ? emulate_smem_per_block : 2;
    return cudaSuccess;
}
template <typename K>
inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, K, int, size_t) {
    return *blocks = 1, cudaSuccess;
}

template <typename K, typename... Args>
void emulate_launch(K kernel, dim3 grid, Args... args) {
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                std::barrier<> barrier(256);
                emulate_barrier = &barrier;
                std::vector<std::thread> threads;
                for (unsigned t = 0; t < 256; ++t)
                    threads.emplace_back([=] {
                        threadIdx = dim3(t);
                        blockIdx = dim3(x, y, z);
                        kernel(args...);
                    });
                for (auto& thread : threads) thread.join();
            }
}
