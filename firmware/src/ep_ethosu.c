/* edgepack runtime: Ethos-U55/U65 driver (see ep_ethosu.h). */
#include <stddef.h>

#include "ep_ethosu.h"

/* Driver-payload actions (Vela driver_actions.py DACommands): tag byte 0. */
#define DA_CONFIG 0x01u
#define DA_CMD_STREAM 0x02u
#define DA_READ_APB 0x03u
#define DA_DUMP_SHRAM 0x04u
#define DA_NOP 0x05u

/* CONFIG fields compared with the payload's config word (config_r): macs_per_cc [3:0],
 * cmd_stream_version [7:4], shram_size [15:8], product [31:28]. */
#define CONFIG_MACS_MASK 0x0000000Fu
#define CONFIG_VERSION_SHIFT 4
#define CONFIG_SHRAM_MASK 0x0000FF00u
#define CONFIG_PRODUCT_MASK 0xF0000000u

static volatile uint32_t *reg(const ep_ethosu *npu, uint32_t offset)
{
    return (volatile uint32_t *)(npu->base + offset);
}

static uint32_t rd(const ep_ethosu *npu, uint32_t offset)
{
    return *reg(npu, offset);
}

static void wr(const ep_ethosu *npu, uint32_t offset, uint32_t value)
{
    *reg(npu, offset) = value;
}

/* Every memory write (payload, inputs) must reach the bus before the NPU starts reading. */
static void barrier(void)
{
#if defined(__arm__) || defined(__thumb__)
    __asm__ volatile("dsb 0xF" ::: "memory");
#elif defined(__GNUC__)
    __asm__ volatile("" ::: "memory");
#endif
}

static uint32_t word_at(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

ep_ethosu_config ep_ethosu_default_config(void)
{
    ep_ethosu_config c;
    int i;
    c.secure = 1u;
    c.privileged = 1u;
    c.qconfig = 0u;
    c.regioncfg = 0u;
    /* axi_limit_r: max_beats [1:0] = 0 (64 B), memtype [7:4] = 0, max_outstanding_read_m1
     * [23:16] = 31, max_outstanding_write_m1 [31:24] = 15 */
    for (i = 0; i < 4; ++i) c.axi_limit[i] = (31u << 16) | (15u << 24);
    c.reset_polls = 100000u;
    c.run_polls = 200000000u;
    return c;
}

static ep_ethosu_status soft_reset(ep_ethosu *npu)
{
    const ep_ethosu_config *c = &npu->config;
    const uint32_t want = (c->privileged ? EP_ETHOSU_PROT_PRIVILEGED : 0u) | (c->secure ? EP_ETHOSU_PROT_SECURE : 0u);
    uint32_t n;
    int i;
    /* reset_r: pending_cpl [0], pending_csl [1] are the levels the NPU runs at after reset */
    wr(npu, EP_ETHOSU_RESET, want);
    for (n = 0; rd(npu, EP_ETHOSU_STATUS) & EP_ETHOSU_STATUS_RESET; ++n) {
        if (n >= c->reset_polls) return EP_ETHOSU_RESET_TIMEOUT;
    }
    if ((rd(npu, EP_ETHOSU_PROT) & (EP_ETHOSU_PROT_PRIVILEGED | EP_ETHOSU_PROT_SECURE)) != want)
        return EP_ETHOSU_PROT_MISMATCH;
    wr(npu, EP_ETHOSU_QCONFIG, c->qconfig);
    wr(npu, EP_ETHOSU_REGIONCFG, c->regioncfg);
    for (i = 0; i < 4; ++i) wr(npu, EP_ETHOSU_AXI_LIMIT(i), c->axi_limit[i]);
    return EP_ETHOSU_OK;
}

ep_ethosu_status ep_ethosu_init(ep_ethosu *npu, uintptr_t base, const ep_ethosu_config *config)
{
    ep_ethosu_status st;
    if (npu == NULL || base == 0u || (base & 3u) != 0u) return EP_ETHOSU_ERR_ARG;
    npu->base = base;
    npu->config = config ? *config : ep_ethosu_default_config();
    npu->last_status = 0u;
    /* Plain QEMU (and any unimplemented device) reads 0 here: refuse before writing anything. */
    npu->id = rd(npu, EP_ETHOSU_ID);
    if (npu->id == 0u) return EP_ETHOSU_NO_NPU;
    st = soft_reset(npu);
    npu->hw_config = rd(npu, EP_ETHOSU_CONFIG);
    return st;
}

/* Architecture version of an ID word as one comparable number: major [31:28], minor [27:20],
 * patch [19:16]. */
static uint32_t arch_version(uint32_t id)
{
    return id >> 16;
}

ep_ethosu_status ep_ethosu_check_payload(const ep_ethosu *npu, const uint8_t *payload, int32_t payload_bytes,
                                         const uint8_t **stream, int32_t *stream_bytes)
{
    int32_t i, n;
    int have_config = 0;
    if (npu == NULL || payload == NULL || payload_bytes < 8 || (payload_bytes & 3) != 0) return EP_ETHOSU_ERR_ARG;
    if (payload[0] != 'C' || payload[1] != 'O' || payload[2] != 'P' || payload[3] != '1') return EP_ETHOSU_BAD_PAYLOAD;
    n = payload_bytes / 4;
    for (i = 1; i < n;) {
        const uint32_t tag = word_at(payload + 4 * i);
        switch (tag & 0xFFu) {
        case DA_CONFIG: {
            uint32_t cfg, id;
            if (i + 2 >= n) return EP_ETHOSU_BAD_PAYLOAD;
            cfg = word_at(payload + 4 * (i + 1));
            id = word_at(payload + 4 * (i + 2));
            /* A stream for 256 MACs (or another SHRAM size or product) must not run on this NPU. */
            if ((cfg & CONFIG_MACS_MASK) != (npu->hw_config & CONFIG_MACS_MASK) ||
                (cfg & CONFIG_SHRAM_MASK) != (npu->hw_config & CONFIG_SHRAM_MASK) ||
                (cfg & CONFIG_PRODUCT_MASK) != (npu->hw_config & CONFIG_PRODUCT_MASK) ||
                ((cfg >> CONFIG_VERSION_SHIFT) & 0xFu) > ((npu->hw_config >> CONFIG_VERSION_SHIFT) & 0xFu))
                return EP_ETHOSU_CONFIG_MISMATCH;
            /* Same major architecture; the NPU at least as new as what Vela compiled for. */
            if ((id >> 28) != (npu->id >> 28) || arch_version(id) > arch_version(npu->id))
                return EP_ETHOSU_ARCH_MISMATCH;
            have_config = 1;
            i += 3;
            break;
        }
        case DA_CMD_STREAM: {
            /* length in words: bits [15:8] of the tag are its high byte, bits [31:16] the rest */
            const int32_t words = (int32_t)(((tag >> 8) & 0xFFu) << 16 | (tag >> 16));
            if (!have_config || words <= 0 || words > n - (i + 1)) return EP_ETHOSU_BAD_PAYLOAD;
            if (stream) *stream = payload + 4 * (i + 1);
            if (stream_bytes) *stream_bytes = 4 * words;
            return EP_ETHOSU_OK;
        }
        case DA_READ_APB:
        case DA_DUMP_SHRAM:
        case DA_NOP:
            i += 1;
            break;
        default:
            return EP_ETHOSU_BAD_PAYLOAD;
        }
    }
    return EP_ETHOSU_BAD_PAYLOAD;
}

static ep_ethosu_status decode_error(uint32_t status)
{
    if (status & EP_ETHOSU_STATUS_BUS_ERROR) return EP_ETHOSU_BUS_ERROR;
    if (status & EP_ETHOSU_STATUS_PARSE_ERROR) return EP_ETHOSU_PARSE_ERROR;
    if (status & EP_ETHOSU_STATUS_WD_FAULT) return EP_ETHOSU_WATCHDOG;
    if (status & EP_ETHOSU_STATUS_ECC_FAULT) return EP_ETHOSU_ECC_ERROR;
    return EP_ETHOSU_OK;
}

ep_ethosu_status ep_ethosu_invoke(ep_ethosu *npu, const uint8_t *payload, int32_t payload_bytes,
                                  const uint64_t *base_pointers, int32_t num_regions)
{
    const uint8_t *stream = NULL;
    int32_t stream_bytes = 0, i;
    uint32_t status = 0u, n;
    ep_ethosu_status st;
    if (npu == NULL || npu->base == 0u || num_regions < 0 || num_regions > EP_ETHOSU_MAX_REGIONS ||
        (num_regions > 0 && base_pointers == NULL))
        return EP_ETHOSU_ERR_ARG;
    st = ep_ethosu_check_payload(npu, payload, payload_bytes, &stream, &stream_bytes);
    if (st != EP_ETHOSU_OK) return st;
    if (((uintptr_t)stream & 15u) != 0u) return EP_ETHOSU_BAD_REGION;
    for (i = 0; i < num_regions; ++i) {
        if ((base_pointers[i] & 15u) != 0u) return EP_ETHOSU_BAD_REGION;
    }
    wr(npu, EP_ETHOSU_QBASE, (uint32_t)(uintptr_t)stream);
    wr(npu, EP_ETHOSU_QBASE + 4u, (uint32_t)((uint64_t)(uintptr_t)stream >> 32));
    wr(npu, EP_ETHOSU_QSIZE, (uint32_t)stream_bytes);
    for (i = 0; i < num_regions; ++i) {
        wr(npu, EP_ETHOSU_BASEP(i), (uint32_t)base_pointers[i]);
        wr(npu, EP_ETHOSU_BASEP(i) + 4u, (uint32_t)(base_pointers[i] >> 32));
    }
    barrier();
    wr(npu, EP_ETHOSU_CMD, EP_ETHOSU_CMD_START);
    st = EP_ETHOSU_TIMEOUT;
    for (n = 0; n < npu->config.run_polls; ++n) {
        status = rd(npu, EP_ETHOSU_STATUS);
        if (decode_error(status) != EP_ETHOSU_OK) {
            st = decode_error(status);
            break;
        }
        if (status & EP_ETHOSU_STATUS_IRQ_RAISED) {
            st = (status & EP_ETHOSU_STATUS_CMD_END) ? EP_ETHOSU_OK : EP_ETHOSU_NO_STREAM_END;
            break;
        }
    }
    npu->last_status = status;
    wr(npu, EP_ETHOSU_CMD, EP_ETHOSU_CMD_CLEAR_IRQ);
    barrier();
    if (st != EP_ETHOSU_OK) {
        /* Leave the NPU clean for the next invoke; the first error is what the caller sees. */
        (void)soft_reset(npu);
    }
    return st;
}

ep_ethosu_status ep_ethosu_run_op(const ep_ethosu_op_params *p, uint8_t *arena, int32_t arena_bytes)
{
    uint64_t bases[EP_ETHOSU_MAX_REGIONS];
    int32_t k;
    if (p == NULL || arena == NULL || p->num_regions < 0 || p->num_regions > EP_ETHOSU_MAX_REGIONS)
        return EP_ETHOSU_ERR_ARG;
    for (k = 0; k < p->num_regions; ++k) {
        const ep_ethosu_region *r = &p->regions[k];
        if (r->bytes < 0) return EP_ETHOSU_ERR_ARG;
        if (r->address != NULL) {
            bases[k] = (uint64_t)(uintptr_t)r->address;
        } else if (r->bytes == 0) {
            bases[k] = 0u; /* unused region */
        } else {
            if (r->arena_offset < 0 || (int64_t)r->arena_offset + r->bytes > (int64_t)arena_bytes)
                return EP_ETHOSU_BAD_REGION;
            bases[k] = (uint64_t)(uintptr_t)(arena + r->arena_offset);
        }
        if ((bases[k] & 15u) != 0u) return EP_ETHOSU_BAD_REGION;
    }
    return ep_ethosu_invoke(p->npu, p->payload, p->payload_bytes, bases, p->num_regions);
}

const char *ep_ethosu_status_text(int32_t status)
{
    switch (status) {
    case EP_ETHOSU_OK: return "ok";
    case EP_ETHOSU_ERR_ARG: return "bad driver argument";
    case EP_ETHOSU_NO_NPU: return "NPU absent (ID register reads 0)";
    case EP_ETHOSU_RESET_TIMEOUT: return "NPU reset did not finish";
    case EP_ETHOSU_PROT_MISMATCH: return "NPU security/privilege level differs from the requested one";
    case EP_ETHOSU_BAD_PAYLOAD: return "not a Vela COP1 driver payload";
    case EP_ETHOSU_CONFIG_MISMATCH: return "payload compiled for another NPU configuration (CONFIG)";
    case EP_ETHOSU_ARCH_MISMATCH: return "payload needs a newer NPU architecture (ID)";
    case EP_ETHOSU_BAD_REGION: return "command stream or region misaligned or outside the arena";
    case EP_ETHOSU_TIMEOUT: return "NPU timed out";
    case EP_ETHOSU_BUS_ERROR: return "NPU bus error";
    case EP_ETHOSU_PARSE_ERROR: return "NPU command stream parse error";
    case EP_ETHOSU_WATCHDOG: return "NPU watchdog fault";
    case EP_ETHOSU_ECC_ERROR: return "NPU ECC fault";
    case EP_ETHOSU_NO_STREAM_END: return "NPU stopped before the end of the command stream";
    default: return "unknown status";
    }
}
