SELECT "s0"."band" AS "band", count(*) AS "n", avg("s0"."seeing") AS "avg", min("s0"."expMidpt") AS "min" FROM "__sv_t0" AS "s0" GROUP BY "s0"."band" HAVING (count(*) > 2) ORDER BY 2 DESC
