-- The unit price a reservation was made at, so a repeated reservation call answers with
-- the price the shopper was charged, not today's catalogue price. NULL only for rows
-- written before this migration (then the catalogue price is used).
ALTER TABLE stock_reservation ADD COLUMN price INTEGER;
