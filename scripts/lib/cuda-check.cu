// The CUDA check `scripts/gpu-check` runs inside a container: a vector sum checked on the
// host side (`cuda-check`), or a kernel kept busy for a number of seconds so that the GPU's
// telemetry shows a process (`cuda-check busy SECONDS`). Exit 0 only when CUDA really worked.
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <cuda_runtime.h>

__global__ void add(const float *a, const float *b, float *c, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) c[i] = a[i] + b[i];
}

__global__ void spin(float *x, int rounds) {
    float v = x[threadIdx.x];
    for (int r = 0; r < rounds; r++) v = v * 0.999f + 0.001f;
    x[threadIdx.x] = v;
}

static int check(cudaError_t e, const char *what) {
    if (e != cudaSuccess) {
        std::fprintf(stderr, "cuda-check: %s: %s\n", what, cudaGetErrorString(e));
        std::exit(1);
    }
    return 0;
}

int main(int argc, char **argv) {
    int count = 0;
    check(cudaGetDeviceCount(&count), "counting devices");
    cudaDeviceProp prop;
    check(cudaGetDeviceProperties(&prop, 0), "reading device 0");
    std::printf("cuda-check: %d device(s); device 0 is %s\n", count, prop.name);
    if (argc == 3 && std::atoi(argv[2]) > 0) {
        float *x;
        check(cudaMalloc(&x, 256 << 20), "allocating 256 MiB");
        time_t end = std::time(nullptr) + std::atoi(argv[2]);
        while (std::time(nullptr) < end) {
            spin<<<1, 256>>>(x, 1 << 20);
            check(cudaDeviceSynchronize(), "spinning");
        }
        std::printf("cuda-check: busy for %s s\n", argv[2]);
        return 0;
    }
    const int n = 1 << 24;
    float *a = (float *)std::malloc(n * sizeof(float)), *b = (float *)std::malloc(n * sizeof(float));
    float *c = (float *)std::malloc(n * sizeof(float));
    for (int i = 0; i < n; i++) { a[i] = (float)i; b[i] = 2.0f * i; }
    float *da, *db, *dc;
    check(cudaMalloc(&da, n * sizeof(float)), "allocating a");
    check(cudaMalloc(&db, n * sizeof(float)), "allocating b");
    check(cudaMalloc(&dc, n * sizeof(float)), "allocating c");
    check(cudaMemcpy(da, a, n * sizeof(float), cudaMemcpyHostToDevice), "copying a");
    check(cudaMemcpy(db, b, n * sizeof(float), cudaMemcpyHostToDevice), "copying b");
    add<<<(n + 255) / 256, 256>>>(da, db, dc, n);
    check(cudaGetLastError(), "launching");
    check(cudaMemcpy(c, dc, n * sizeof(float), cudaMemcpyDeviceToHost), "copying c back");
    for (int i = 0; i < n; i++) {
        if (c[i] != 3.0f * i) {
            std::fprintf(stderr, "cuda-check: wrong sum at %d: %f\n", i, c[i]);
            return 1;
        }
    }
    std::printf("cuda-check: %d sums right\n", n);
    return 0;
}
