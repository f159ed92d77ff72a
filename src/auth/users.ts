import type pg from 'pg';
import { hashPassword } from './passwords.js';

export const ROLES = ['user', 'admin'] as const;
/** user: changes what it owns; admin: changes anything. */
export type Role = (typeof ROLES)[number];

export interface User {
  id: string;
  email: string;
  role: Role;
  createdAt: string;
}

interface UserRow {
  id: string;
  email: string;
  role: Role;
  password_hash: string;
  created_at: Date;
}

const toUser = (row: UserRow): User => ({
  id: String(row.id),
  email: row.email,
  role: row.role,
  createdAt: row.created_at.toISOString(),
});

const COLUMNS = 'id, email, role, password_hash, created_at';

/** Users in PostgreSQL; emails are unique case-insensitively. Disabled users cannot sign in. */
export class UserRepository {
  constructor(private readonly pool: pg.Pool) {}

  async findForSignIn(email: string): Promise<{ user: User; passwordHash: string } | undefined> {
    const { rows } = await this.pool.query<UserRow>(
      `SELECT ${COLUMNS} FROM users WHERE lower(email) = lower($1) AND disabled_at IS NULL`,
      [email],
    );
    const row = rows[0];
    return row ? { user: toUser(row), passwordHash: row.password_hash } : undefined;
  }

  async get(id: string): Promise<User | undefined> {
    const { rows } = await this.pool.query<UserRow>(
      `SELECT ${COLUMNS} FROM users WHERE id = $1 AND disabled_at IS NULL`,
      [id],
    );
    return rows[0] ? toUser(rows[0]) : undefined;
  }

  /**
   * Create the user unless one with this email exists: safe for every worker and replica to call at
   * once (the unique index decides). Without a role, the first user of the database is an admin and
   * every later one a user. Returns whether this call created it.
   */
  async createIfMissing(email: string, password: string, role?: Role): Promise<boolean> {
    if (await this.exists(email)) return false;
    const { rowCount } = await this.pool.query(
      `INSERT INTO users (email, password_hash, role)
       SELECT $1, $2, COALESCE($3, CASE WHEN EXISTS (SELECT 1 FROM users) THEN 'user' ELSE 'admin' END)
       ON CONFLICT DO NOTHING`,
      [email, await hashPassword(password), role ?? null],
    );
    return rowCount === 1;
  }

  private async exists(email: string): Promise<boolean> {
    const { rowCount } = await this.pool.query('SELECT 1 FROM users WHERE lower(email) = lower($1)', [email]);
    return (rowCount ?? 0) > 0;
  }
}
