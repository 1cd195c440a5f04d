-- dailypot: no transaction
-- GET /analytics/aggregates?geohash=<prefix> (shared/src/analytics/aggregates.rs):
-- the prefix is the range geohash COLLATE "C" >= p AND < p+ (a literal prefix, `_`
-- and `%` included), which no index served: LIKE and this range cannot use
-- idx_sensor_aggregates_5m_geohash (default collation), so a rare prefix walked
-- the whole table. Byte order ("C") is what makes a prefix one index range; the
-- window_start after it orders each geohash's windows. The old server's own
-- `geohash LIKE '<prefix>%'` can use it too while it still runs.
--
-- Built CONCURRENTLY, outside a transaction (shared/src/migrations/
-- no_transaction.rs): the old server's job writes this table every minute and
-- would otherwise wait for the whole build. A build that failed half-way (an
-- INVALID index) is dropped and built again by the next `migrate`.
CREATE INDEX CONCURRENTLY IF NOT EXISTS sensor_aggregates_5m_geohash_prefix
    ON sensor_aggregates_5m (geohash COLLATE "C", window_start);
