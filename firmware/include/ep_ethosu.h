/*
 * edgepack runtime: a driver for the Arm Ethos-U55 / Ethos-U65 NPU.
 *
 * Runs Vela's driver payload (the first input of an `ethos-u` operator: "COP1", a config action,
 * the register command stream) with the base-pointer regions the plan gives it. Written from the
 * register definitions Vela ships (ethosu/vela/ethos_u55_regs/ethos_u55_regs.py) and the
 * documented start-up sequence; polls STATUS (no interrupt handler), every wait is bounded.
 * Portable C99: on a board without an NPU (or on the host) point it at nothing and get
 * EP_ETHOSU_NO_NPU, never a hang. No allocation; the caller owns the ep_ethosu state.
 */
#ifndef EP_ETHOSU_H
#define EP_ETHOSU_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Register offsets from the NPU's base address (ethos_u55_regs.py, class NPU_REG). */
#define EP_ETHOSU_ID 0x000u
#define EP_ETHOSU_STATUS 0x004u
#define EP_ETHOSU_CMD 0x008u
#define EP_ETHOSU_RESET 0x00Cu
#define EP_ETHOSU_QBASE 0x010u  /* low word; high word at 0x014 */
#define EP_ETHOSU_QREAD 0x018u
#define EP_ETHOSU_QCONFIG 0x01Cu
#define EP_ETHOSU_QSIZE 0x020u
#define EP_ETHOSU_PROT 0x024u
#define EP_ETHOSU_CONFIG 0x028u
#define EP_ETHOSU_REGIONCFG 0x03Cu
#define EP_ETHOSU_AXI_LIMIT(i) (0x040u + 4u * (uint32_t)(i))
/* Base pointer of region i: 64 bits, low word at 0x080 + 8*i, high word 4 bytes later. */
#define EP_ETHOSU_BASEP(i) (0x080u + 8u * (uint32_t)(i))
#define EP_ETHOSU_REGISTER_BYTES 0x1000u

/* STATUS bits (status_r). */
#define EP_ETHOSU_STATUS_STATE (1u << 0)
#define EP_ETHOSU_STATUS_IRQ_RAISED (1u << 1)
#define EP_ETHOSU_STATUS_BUS_ERROR (1u << 2)
#define EP_ETHOSU_STATUS_RESET (1u << 3)
#define EP_ETHOSU_STATUS_PARSE_ERROR (1u << 4)
#define EP_ETHOSU_STATUS_CMD_END (1u << 5)
#define EP_ETHOSU_STATUS_WD_FAULT (1u << 7)
#define EP_ETHOSU_STATUS_ECC_FAULT (1u << 8)

/* CMD bits (cmd_r). */
#define EP_ETHOSU_CMD_START (1u << 0)
#define EP_ETHOSU_CMD_CLEAR_IRQ (1u << 1)
#define EP_ETHOSU_CMD_CLOCK_Q (1u << 2)
#define EP_ETHOSU_CMD_POWER_Q (1u << 3)

/* RESET / PROT bits: privilege (CPL) and security (CSL) levels. */
#define EP_ETHOSU_PROT_PRIVILEGED (1u << 0)
#define EP_ETHOSU_PROT_SECURE (1u << 1)

/** At most this many base-pointer regions (the U55/U65 have 8). */
#define EP_ETHOSU_MAX_REGIONS 8

/** Driver status. Values do not overlap ep_status (edgepack.h), so either fits one int32. */
typedef enum {
    EP_ETHOSU_OK = 0,
    EP_ETHOSU_ERR_ARG = -16,          /**< NULL pointer, bad size or region count */
    EP_ETHOSU_NO_NPU = -17,           /**< ID reads 0: nothing at the NPU's address */
    EP_ETHOSU_RESET_TIMEOUT = -18,    /**< reset_status did not clear */
    EP_ETHOSU_PROT_MISMATCH = -19,    /**< PROT does not show the requested security/privilege */
    EP_ETHOSU_BAD_PAYLOAD = -20,      /**< not a COP1 payload, or no command stream in it */
    EP_ETHOSU_CONFIG_MISMATCH = -21,  /**< payload compiled for another MAC count/SHRAM/product */
    EP_ETHOSU_ARCH_MISMATCH = -22,    /**< payload needs a newer architecture than ID reports */
    EP_ETHOSU_BAD_REGION = -23,       /**< a base pointer or the stream not 16-byte aligned */
    EP_ETHOSU_TIMEOUT = -24,          /**< the stream did not finish within the poll budget */
    EP_ETHOSU_BUS_ERROR = -25,        /**< STATUS.bus_status */
    EP_ETHOSU_PARSE_ERROR = -26,      /**< STATUS.cmd_parse_error */
    EP_ETHOSU_WATCHDOG = -27,         /**< STATUS.wd_fault */
    EP_ETHOSU_ECC_ERROR = -28,        /**< STATUS.ecc_fault */
    EP_ETHOSU_NO_STREAM_END = -29     /**< IRQ without cmd_end_reached */
} ep_ethosu_status;

/** Bus and protection set-up written at init. ep_ethosu_default_config() gives a valid one. */
typedef struct {
    uint32_t secure;          /**< 1: run the NPU at the Secure security level */
    uint32_t privileged;      /**< 1: privileged accesses */
    uint32_t qconfig;         /**< AXI memory type of the command stream (QCONFIG) */
    uint32_t regioncfg;       /**< 2-bit AXI memory type per region 0..7 (REGIONCFG) */
    uint32_t axi_limit[4];    /**< AXI_LIMIT0..3: burst length, memory type, outstanding txns */
    uint32_t reset_polls;     /**< STATUS reads to wait for the reset to finish */
    uint32_t run_polls;       /**< STATUS reads to wait for a command stream to finish */
} ep_ethosu_config;

/** One NPU. ep_ethosu_init fills it; nothing else writes it. */
typedef struct {
    uintptr_t base;           /**< register block address */
    ep_ethosu_config config;
    uint32_t id;              /**< ID register as read at init */
    uint32_t hw_config;       /**< CONFIG register as read at init */
    uint32_t last_status;     /**< STATUS when the last invoke ended (for diagnostics) */
} ep_ethosu;

/** The default set-up: Secure privileged, every region on AXI memory type 0 (normal, cacheable
 *  bufferable), 64-byte bursts, 32 outstanding reads and 16 writes, generous poll budgets. */
ep_ethosu_config ep_ethosu_default_config(void);

/**
 * Soft-reset the NPU at `base` with the configured security/privilege, wait for the reset to
 * finish, check PROT, then program QCONFIG, REGIONCFG and the AXI limits.
 * @return EP_ETHOSU_OK; EP_ETHOSU_NO_NPU when ID reads 0 (checked before any write).
 */
ep_ethosu_status ep_ethosu_init(ep_ethosu *npu, uintptr_t base, const ep_ethosu_config *config);

/**
 * Parse a COP1 payload: check its config word against CONFIG (MACs, SHRAM size, product,
 * command-stream version) and its architecture version against ID; return the command stream.
 * Needs an initialised npu. stream/stream_bytes may be NULL.
 */
ep_ethosu_status ep_ethosu_check_payload(const ep_ethosu *npu, const uint8_t *payload, int32_t payload_bytes,
                                         const uint8_t **stream, int32_t *stream_bytes);

/**
 * Run one payload: check it, program QBASE/QSIZE and the num_regions base pointers (each
 * 16-byte aligned), start, and poll STATUS until the stream ends, an error bit is set or the
 * poll budget runs out. On any error the NPU is soft-reset (and set up again) so that the next
 * invoke starts clean. The caller cleans/invalidates data caches around the call if it has one.
 */
ep_ethosu_status ep_ethosu_invoke(ep_ethosu *npu, const uint8_t *payload, int32_t payload_bytes,
                                  const uint64_t *base_pointers, int32_t num_regions);

/* ------------------------------------------------------------------------------------ */
/* An NPU step of an execution plan (ep_op.kernel = EP_KERNEL_ETHOSU, edgepack.h)         */
/* ------------------------------------------------------------------------------------ */

/** Base-pointer region k of an `ethos-u` operator: a constant (Vela's weights in the model
 *  region) or a span of the plan's arena (scratch, fast scratch, input/output tensors). */
typedef struct {
    const uint8_t *address;   /**< constant region, or NULL: the region is in the arena */
    int32_t arena_offset;     /**< arena byte offset (address == NULL) */
    int32_t bytes;            /**< bytes the command stream may touch (0: region unused) */
} ep_ethosu_region;

/** One `ethos-u` operator of Vela's optimized model. */
typedef struct {
    ep_ethosu *npu;           /**< the initialised driver */
    const uint8_t *payload;   /**< Vela's COP1 driver payload, 16-byte aligned */
    int32_t payload_bytes;
    int32_t num_regions;      /**< regions[0 .. num_regions-1] become BASEP0.. */
    ep_ethosu_region regions[EP_ETHOSU_MAX_REGIONS];
    int32_t input_bytes[8];   /**< bytes of each input tensor (ep_op.inputs), for the plan's checks */
    int32_t output_bytes;     /**< bytes of the first output tensor (ep_op.output) */
} ep_ethosu_op_params;

/**
 * Run one NPU step over the arena: every arena region must lie inside the arena and every
 * region must be 16-byte aligned (EP_ETHOSU_BAD_REGION otherwise), then ep_ethosu_invoke.
 */
ep_ethosu_status ep_ethosu_run_op(const ep_ethosu_op_params *p, uint8_t *arena, int32_t arena_bytes);

/** A short description of a status ("NPU absent (ID reads 0)", ...). Never NULL. */
const char *ep_ethosu_status_text(int32_t status);

#ifdef __cplusplus
}
#endif

#endif /* EP_ETHOSU_H */
