SELECT "s0"."id" AS "id", "s0"."mag_vt" AS "mag_vt" FROM "__sv_t0" AS "s0" ORDER BY 2 ASC LIMIT 5 OFFSET 10
