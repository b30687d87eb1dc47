-- 0007: logins are looked up case-insensitively (agents/auth.py: lower(login) = lower($1)),
-- so they must also be unique case-insensitively: "Alice" and "alice" would otherwise
-- be two users behind one login. The index also serves that lookup.
CREATE UNIQUE INDEX users_login_lower ON users (lower(login));
