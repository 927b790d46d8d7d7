/*
 * core_test.c - the lib/core runner: every case of this directory (declared in core_test.h).
 */
#include "tests/unit/core/core_test.h"
#include "tests/unit/unit.h"

UNIT_MAIN(UNIT(t_seq_len), UNIT(t_scrub), UNIT(t_map_put_get_del), UNIT(t_map_grow_keeps_keys),
          UNIT(t_map_tombstones), UNIT(t_map_sorted_keys), UNIT(t_map_foreach_delete),
          UNIT(t_map_alloc_failure), UNIT(t_base64_roundtrip), UNIT(t_base64_padded),
          UNIT(t_pct_encode), UNIT(t_hold_owner_first), UNIT(t_hold_jobs_first),
          UNIT(t_hold_beside), UNIT(t_diag))
