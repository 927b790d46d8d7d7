/*
 * core_test.h - the cases of the lib/core runner (one file per core piece; UNIT_MAIN is in
 * core_test.c).
 */
#ifndef WEFT_TESTS_UNIT_CORE_TEST_H
#define WEFT_TESTS_UNIT_CORE_TEST_H

/* utf8_test.c */
void t_seq_len(void);
void t_scrub(void);
/* map_test.c */
void t_map_put_get_del(void);
void t_map_grow_keeps_keys(void);
void t_map_tombstones(void);
void t_map_sorted_keys(void);
void t_map_foreach_delete(void);
void t_map_alloc_failure(void);
/* hold_test.c */
void t_hold_owner_first(void);
void t_hold_jobs_first(void);
void t_hold_beside(void);
/* codec_test.c */
void t_base64_roundtrip(void);
void t_base64_padded(void);
void t_pct_encode(void);
void t_diag(void);

#endif
