/* Bench-only bare-metal start-up for QEMU mps3-an547 (Cortex-M55, Secure state).
 * Not part of the runtime: the runtime in firmware/ has no start-up code. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end, __stack_top;
extern int main(void);
extern void initialise_monitor_handles(void);

volatile uint32_t bench_systick_wraps;

void Reset_Handler(void);
void Default_Handler(void);
void HardFault_Handler(void);
void SysTick_Handler(void);

void Reset_Handler(void)
{
    uint32_t *src = &__data_load;
    uint32_t *dst = &__data_start;
    while (dst < &__data_end) *dst++ = *src++;
    for (dst = &__bss_start; dst < &__bss_end;) *dst++ = 0;
    /* CPACR: full access to CP10/CP11 (FPU and MVE), else Helium code faults (NOCP). */
    *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;
    __asm volatile("dsb\n\tisb" ::: "memory");
    initialise_monitor_handles();
    exit(main());
}

void Default_Handler(void)
{
    printf("E unexpected exception\n");
    exit(2);
}

void HardFault_Handler(void)
{
    printf("Hard fault\n");
    exit(3);
}

void SysTick_Handler(void) { bench_systick_wraps++; }

void _init(void);
void _fini(void);
void _init(void) {}
void _fini(void) {}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&__stack_top), Reset_Handler, Default_Handler, HardFault_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    0, 0, 0, Default_Handler, Default_Handler, 0, Default_Handler, SysTick_Handler,
};
