/* edgepack runtime: MINIMUM, int8, 4-D broadcasting (raw int8 comparison, as TFLM). */
#include "ep_broadcast.h"

ep_status ep_minimum_s8(const ep_minmax_params *p, const int8_t *input1, const int8_t *input2, int8_t *output)
{
    return ep_minmax_s8(p, input1, input2, output, 0);
}
