/* Plain C baseline of the single-spin updates in ising_moe.mc._kernels (same tables, same
 * xoshiro256** generator, same sweep order). Usage: single_spin {metropolis|heat-bath} q n sweeps
 * Prints nanoseconds per attempted update. Built by benchmarks/bench_mc.py with cc -O3. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t s[4] = {0x9E3779B97F4A7C15ull, 0xBF58476D1CE4E5B9ull, 0x94D049BB133111EBull, 0x2545F4914F6CDD1Dull};
static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static inline uint64_t next_u64(void) {
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45);
    return result;
}
static inline double next_double(void) { return (double)(next_u64() >> 11) * (1.0 / 9007199254740992.0); }
static inline int next_below(int m) { return (int)(next_double() * m); }

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: %s {metropolis|heat-bath} q n sweeps\n", argv[0]); return 2; }
    int heat = strcmp(argv[1], "heat-bath") == 0, q = atoi(argv[2]), n = atoi(argv[3]), sweeps = atoi(argv[4]);
    double *wf = malloc(sizeof(double) * n * q), *wj = malloc(sizeof(double) * q * q), *buf = malloc(sizeof(double) * q);
    int *spins = malloc(sizeof(int) * n);
    for (int i = 0; i < n * q; i++) wf[i] = exp(0.1 * (next_double() - 0.5));
    for (int a = 0; a < q; a++) for (int b = 0; b < q; b++) wj[a * q + b] = a == b ? 1.0 : exp(-1.0);
    for (int i = 0; i < n; i++) spins[i] = next_below(q);
    long accepted = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int sweep = 0; sweep < sweeps; sweep++) {
        for (int i = 0; i < n; i++) {
            int left = i > 0 ? spins[i - 1] : -1, right = i < n - 1 ? spins[i + 1] : -1;
            if (!heat) {
                /* q = 2: the flip, proposed with probability 1/2 (the kernels' ergodic sequential rule) */
                int old = spins[i], nw = q == 2 ? 1 - old : (old + 1 + next_below(q - 1)) % q;
                double num = wf[i * q + nw], den = wf[i * q + old];
                if (left >= 0) { num *= wj[left * q + nw]; den *= wj[left * q + old]; }
                if (right >= 0) { num *= wj[nw * q + right]; den *= wj[old * q + right]; }
                int ok;
                if (q == 2) { double u = next_double(); ok = u < 0.5 && 2.0 * u * den < num; }
                else ok = num >= den || next_double() * den < num;
                if (ok) { spins[i] = nw; accepted++; }
            } else {
                double total = 0.0;
                for (int a = 0; a < q; a++) {
                    double w = wf[i * q + a];
                    if (left >= 0) w *= wj[left * q + a];
                    if (right >= 0) w *= wj[a * q + right];
                    total += w; buf[a] = total;
                }
                double target = next_double() * total;
                int a = 0;
                while (a < q - 1 && buf[a] <= target) a++;
                spins[i] = a;
            }
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / ((double)n * sweeps);
    printf("%.4f %ld\n", ns, accepted);
    return 0;
}
