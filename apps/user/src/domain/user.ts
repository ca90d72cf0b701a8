/** A user as the domain sees it. The password hash never leaves the data and domain layers. */
export interface User {
  id: string;
  email: string;
  name: string;
  createdAt: Date;
  updatedAt: Date;
}

export interface UserWithCredentials extends User {
  passwordHash: string;
}
