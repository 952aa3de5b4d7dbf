/* edgepack runtime: ARG_MIN, int8 input, int32 indices (the first of equal minima, as TFLM). */
#include "ep_internal.h"

ep_status ep_arg_min_s8(const ep_arg_params *p, const int8_t *input, int32_t *output)
{
    return ep_arg_extreme_s8(p, input, output, -1);
}
