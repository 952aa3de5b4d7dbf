/* Bench-only instruction counting with SysTick (QEMU -icount shift=5: ~1.024 ticks/instruction). */
#ifndef BENCH_COUNTER_H
#define BENCH_COUNTER_H
#include <stdint.h>
extern volatile uint32_t bench_systick_wraps;
#define SYST_CSR (*(volatile uint32_t *)0xE000E010)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018)
static inline void counter_start(void)
{
    SYST_RVR = 0x00FFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 7u; /* enable, interrupt on wrap, processor clock */
    /* The first reload (from the 0 written above) raises a wrap on some QEMU machines (mps2)
     * and not on others: wait for it, then start the wrap count from zero. */
    while (SYST_CVR == 0u) {
    }
    for (volatile int i = 0; i < 64; ++i) {
    }
    bench_systick_wraps = 0;
}
static inline uint64_t counter_read(void)
{
    uint32_t w0, v, w1;
    do {
        w0 = bench_systick_wraps;
        v = SYST_CVR;
        w1 = bench_systick_wraps;
    } while (w0 != w1);
    return (uint64_t)w0 * 0x01000000u + (0x00FFFFFFu - v);
}
#endif
