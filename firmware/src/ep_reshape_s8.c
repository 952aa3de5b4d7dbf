/* edgepack runtime: RESHAPE, int8 (a copy; in place allowed). */
#include "ep_internal.h"

ep_status ep_reshape_s8(const ep_reshape_params *p, const int8_t *input, int8_t *output)
{
    if (p == NULL || input == NULL || output == NULL) return EP_ERR_ARG;
    if (p->size < 0) return EP_ERR_DIM;
    if (input != output) memmove(output, input, (size_t)p->size);
    return EP_OK;
}
