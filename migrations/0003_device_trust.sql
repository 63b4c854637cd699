-- Device trust: re-keying is an explicit operator action, and certificates are renewed by the
-- device with its current key.

-- Set by an operator's rekey: until then one enrollment of this active device id may replace
-- its certificate. Cleared by that enrollment.
ALTER TABLE devices ADD COLUMN rekey_allowed_until timestamptz;
-- A renewed certificate not yet used by the device. Both it and certificate_serial are accepted;
-- its first use makes it the current one and the old one stops working.
ALTER TABLE devices ADD COLUMN pending_certificate_serial text;
