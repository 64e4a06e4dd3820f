SELECT "s0"."ra" AS "a "" b", 'it''s' AS "s" FROM "__sv_t0" AS "s0"
