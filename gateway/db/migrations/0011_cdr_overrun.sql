-- 0011: credit control. The seconds a Stop reported past the call's limit (its
-- grant, or its held time once the gateway cut it) plus the overrun grace. With
-- the switch's overrun policy "cap" they are not billed; with "bill" they are.
-- duration_s stays what the switch reported.
ALTER TABLE cdrs ADD COLUMN overrun_s integer NOT NULL DEFAULT 0 CHECK (overrun_s >= 0);
